"""Signing keys kept in a PKCS#11 token (an HSM, a smart card, SoftHSM): Ed25519, CKM_EDDSA.

A key is named by an RFC 7512 URI (`pkcs11:token=<label>;object=<label>`, optionally `id`
and `serial`); the module is a path and the user PIN comes from a file, never from the URI.
The private key is generated in the token (sensitive, not extractable) and never leaves
it: this process only asks the token to sign. `TokenKey` is a `SigningKey`.

PKCS#11 state is per process: a module is initialized once and a token logged in to once.
`_Modules` keeps that state, shared by every key of the process; when the last key of a
module closes, the module is finalized (a later key starts it afresh).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import SignMixin

from exchange.errors import ExchangeError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library

URI_SCHEME = "pkcs11:"
ED25519_OID_DER = bytes.fromhex("06032b6570")  # CKA_EC_PARAMS: id-Ed25519 (RFC 8410)
ED25519_NAME_DER = b"\x13\x0cedwards25519"  # CKA_EC_PARAMS: the curve's printable name
_PATH_ATTRIBUTES = {"token", "object", "id", "serial", "type", "manufacturer", "model"}
_PROBE = b"exchange: does this token key sign what its public key verifies?"


class TokenError(ExchangeError):
    """A PKCS#11 module, token or key that cannot be used; the code says which."""

    code = "pkcs11.unavailable"


@dataclass(frozen=True, slots=True)
class KeyUri:
    """The parts of an RFC 7512 URI that find a private key: its token, then its label or id."""

    token: str
    object: str | None = None
    id: bytes | None = None
    serial: str | None = None

    @classmethod
    def parse(cls, uri: str) -> KeyUri:
        """Read `pkcs11:token=…;object=…` (percent-encoded values). Query attributes such as
        `pin-value` or `module-path` are refused: the PIN and module are configured apart."""
        if not uri.startswith(URI_SCHEME):
            raise TokenError(f"{uri!r} is not a pkcs11: URI", code="pkcs11.uri")
        path, _, query = uri[len(URI_SCHEME) :].partition("?")
        if query:
            raise TokenError(
                "the key URI must not carry query attributes (pin-value, module-path, ...): "
                "the PIN comes from pkcs11_pin_path and the module from pkcs11_module",
                code="pkcs11.uri",
            )
        values: dict[str, bytes] = {}
        for part in path.split(";") if path else ():
            name, sep, value = part.partition("=")
            if not sep or name in values or name not in _PATH_ATTRIBUTES:
                raise TokenError(
                    f"{part!r} in the key URI: expected name=value, each name once, with "
                    f"names from {', '.join(sorted(_PATH_ATTRIBUTES))}",
                    code="pkcs11.uri",
                )
            values[name] = unquote_to_bytes(value)
        if values.get("type", b"private") != b"private":
            raise TokenError(
                "the key URI must name a private key (type=private)", code="pkcs11.uri"
            )
        try:
            text = {k: v.decode() for k, v in values.items() if k != "id"}
        except UnicodeDecodeError:
            raise TokenError("the key URI's labels are not UTF-8", code="pkcs11.uri") from None
        if not text.get("token") or not (text.get("object") or values.get("id")):
            raise TokenError(
                "the key URI must name the token (token=) and the key (object= or id=)",
                code="pkcs11.uri",
            )
        return cls(text["token"], text.get("object"), values.get("id"), text.get("serial"))

    def key_template(self) -> dict[Attribute, Any]:
        """The attributes that select this key's objects (with their class added)."""
        template: dict[Attribute, Any] = {}
        if self.object is not None:
            template[Attribute.LABEL] = self.object
        if self.id is not None:
            template[Attribute.ID] = self.id
        return template

    def __str__(self) -> str:
        name = f"object={self.object}" if self.object is not None else f"id={self.id!r}"
        return f"pkcs11:token={self.token};{name}"


@dataclass(eq=False)
class _Login:
    """One logged-in session on one token, shared by every key of the process there."""

    module: str
    lib: Library
    session: pkcs11.Session
    pin_digest: bytes
    users: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Modules:
    """The process's PKCS#11 modules and token logins (the standard allows one of each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._libs: dict[str, Library] = {}
        self._logins: dict[tuple[str, str, str | None], _Login] = {}

    def login(self, module: Path, uri: KeyUri, pin: str) -> _Login:
        path = os.fspath(module.resolve())
        digest = hashlib.sha256(pin.encode()).digest()
        with self._lock:
            existing = self._logins.get((path, uri.token, uri.serial))
            if existing is not None:
                if not hmac.compare_digest(existing.pin_digest, digest):
                    raise TokenError(
                        f"token {uri.token} is already open in this process with another PIN",
                        code="pkcs11.pin",
                    )
                existing.users += 1
                return existing
            lib = self._libs.get(path) or self._load(path)
            self._libs[path] = lib
            try:
                session = _open_session(lib, uri, pin)
            except BaseException:
                self._finalize_if_unused(path)
                raise
            login = _Login(path, lib, session, digest, users=1)
            self._logins[(path, uri.token, uri.serial)] = login
            return login

    def release(self, login: _Login) -> None:
        with self._lock:
            login.users -= 1
            if login.users > 0:
                return
            for name, other in list(self._logins.items()):
                if other is login:
                    del self._logins[name]
            with suppress(p11.PKCS11Error), login.lock:  # a token gone: finalizing frees it
                login.session.close()
            self._finalize_if_unused(login.module)

    @staticmethod
    def _load(path: str) -> Library:
        try:
            return pkcs11.lib(path)
        except (p11.PKCS11Error, OSError) as err:
            raise TokenError(f"cannot load the PKCS#11 module {path}: {err}") from None

    def _finalize_if_unused(self, path: str) -> None:
        if any(login.module == path for login in self._logins.values()):
            return
        lib = self._libs.pop(path, None)
        if lib is not None:
            with suppress(p11.PKCS11Error):  # nothing more to release then
                lib.finalize()


_MODULES = _Modules()


class TokenKey:
    """An Ed25519 private key in a token. Signs with CKM_EDDSA, one operation at a time on
    the shared session; its public key is read from the token once and checked at open."""

    def __init__(
        self, login: _Login, private: SignMixin, public: Ed25519PublicKey, uri: KeyUri
    ) -> None:
        self._login: _Login | None = login
        self._private = private
        self._public = public
        self.uri = uri

    def sign(self, data: bytes) -> bytes:
        login = self._login
        if login is None:
            raise TokenError(f"the key {self.uri} is closed")
        try:
            with login.lock:
                return bytes(self._private.sign(data, mechanism=Mechanism.EDDSA))
        except p11.PKCS11Error as err:
            raise TokenError(f"the token failed to sign with {self.uri}: {_name(err)}") from None

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def close(self) -> None:
        """Let go of the token (idempotent); the last key of a module finalizes it."""
        login, self._login = self._login, None
        if login is not None:
            _MODULES.release(login)

    def __enter__(self) -> TokenKey:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenKey({self.uri})"


def open_token_key(module: Path, uri: str, pin_path: Path) -> TokenKey:
    """The Ed25519 key `uri` names in a token of `module`, logged in with the PIN file's PIN.

    Refused: a URI that is not valid (`pkcs11.uri`), a module that does not load
    (`pkcs11.unavailable`), no such token (`pkcs11.token`), a PIN the token refuses or an
    unreadable PIN file (`pkcs11.pin`), no single Ed25519 key pair by that name, or one whose
    private half does not sign what its public half verifies (`pkcs11.key`).
    """
    key_uri = KeyUri.parse(uri)
    login = _MODULES.login(module, key_uri, read_pin(pin_path))
    try:
        with login.lock:
            private = _single(login.session, ObjectClass.PRIVATE_KEY, key_uri)
            public = _public_half(login.session, private, key_uri)
        key = TokenKey(login, private, public, key_uri)
        try:
            public.verify(key.sign(_PROBE), _PROBE)
        except InvalidSignature:
            raise TokenError(
                f"the private key {key_uri} does not sign what the public key beside it "
                "verifies: the token's objects are mismatched",
                code="pkcs11.key",
            ) from None
        return key
    except BaseException:
        _MODULES.release(login)
        raise


def generate_token_key(module: Path, uri: str, pin_path: Path) -> TokenKey:
    """Generate an Ed25519 key pair in the token, named as `uri` says, and open it.

    The private key is sensitive and not extractable: it never leaves the token. A URI that
    already names an object of the token is refused (`pkcs11.key`): a key is never replaced.
    """
    key_uri = KeyUri.parse(uri)
    if key_uri.object is None:
        raise TokenError("a new key needs a label: object= in the key URI", code="pkcs11.uri")
    login = _MODULES.login(module, key_uri, read_pin(pin_path))
    try:
        with login.lock:
            taken = list(login.session.get_objects(key_uri.key_template()))
            if taken:
                raise TokenError(
                    f"token {key_uri.token} already holds {key_uri}: choose another object label",
                    code="pkcs11.key",
                )
            login.session.generate_keypair(
                KeyType.EC_EDWARDS,
                0,
                store=True,
                label=key_uri.object,
                id=key_uri.id or secrets.token_bytes(16),
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                public_template={Attribute.EC_PARAMS: ED25519_OID_DER, Attribute.VERIFY: True},
                private_template={
                    Attribute.SIGN: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                },
            )
    except p11.PKCS11Error as err:
        raise TokenError(f"the token could not generate {key_uri}: {_name(err)}") from None
    finally:
        _MODULES.release(login)
    return open_token_key(module, uri, pin_path)


def read_pin(path: Path) -> str:
    """The user PIN: the file's content without its final line break."""
    try:
        pin = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"cannot read the PIN file {path}: {err}", code="pkcs11.pin") from None
    if not pin:
        raise TokenError(f"the PIN file {path} is empty", code="pkcs11.pin")
    return pin


def _open_session(lib: Library, uri: KeyUri, pin: str) -> pkcs11.Session:
    try:
        if uri.serial is not None:
            token = lib.get_token(token_label=uri.token, token_serial=uri.serial.encode())
        else:
            token = lib.get_token(token_label=uri.token)
    except p11.NoSuchToken:
        raise TokenError(f"no token labelled {uri.token!r}", code="pkcs11.token") from None
    except p11.MultipleTokensReturned:
        raise TokenError(
            f"several tokens are labelled {uri.token!r}: add serial= to the key URI",
            code="pkcs11.token",
        ) from None
    except p11.PKCS11Error as err:
        raise TokenError(f"cannot list the module's tokens: {_name(err)}") from None
    try:
        return token.open(rw=True, user_pin=pin)
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise TokenError(f"token {uri.token} refused the PIN", code="pkcs11.pin") from None
    except (p11.PinLocked, p11.PinExpired) as err:
        raise TokenError(f"token {uri.token}: {_name(err)}", code="pkcs11.pin") from None
    except p11.PKCS11Error as err:
        raise TokenError(f"cannot log in to token {uri.token}: {_name(err)}") from None


def _single(session: pkcs11.Session, kind: ObjectClass, uri: KeyUri) -> Any:
    template = {Attribute.CLASS: kind, **uri.key_template()}
    try:
        found = list(session.get_objects(template))
    except p11.PKCS11Error as err:
        raise TokenError(f"cannot search the token for {uri}: {_name(err)}") from None
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise TokenError(
            f"token {uri.token} holds {what} {kind.name} named {uri}", code="pkcs11.key"
        )
    return found[0]


def _public_half(session: pkcs11.Session, private: Any, uri: KeyUri) -> Ed25519PublicKey:
    """The Ed25519 public key stored beside `private` (same id, else same label)."""
    if private.key_type != KeyType.EC_EDWARDS:
        raise TokenError(
            f"{uri} is a {private.key_type.name} key; node keys are Ed25519", code="pkcs11.key"
        )
    key_id = private[Attribute.ID]
    twin = KeyUri(uri.token, None if key_id else private.label, key_id or None, uri.serial)
    public = _single(session, ObjectClass.PUBLIC_KEY, twin)
    params = bytes(public[Attribute.EC_PARAMS])
    if params not in (ED25519_OID_DER, ED25519_NAME_DER):
        raise TokenError(
            f"{uri} is an Edwards key on another curve than Ed25519", code="pkcs11.key"
        )
    point = bytes(public[Attribute.EC_POINT])
    # CKA_EC_POINT is a DER OCTET STRING of the 32 bytes (some tokens store them bare).
    raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise TokenError(
            f"{uri}'s public key is not 32 bytes of Ed25519", code="pkcs11.key"
        ) from None


def _name(err: Exception) -> str:
    """A PKCS#11 error's name and message (their messages are often empty)."""
    return f"{type(err).__name__} {err}".strip()
