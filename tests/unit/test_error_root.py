"""One error root: every exception the package defines is an `ExchangeError` whose code is
in `ERROR_TABLE`, so the CLI prints it and the HTTP layer maps it like any other refusal."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import exchange
from exchange.crypto.canonical import CanonicalizationError, canonicalize
from exchange.errors import ERROR_TABLE, ExchangeError
from exchange.transport.bus import BusError, ConsumeError, PublishError
from exchange.transport.topology import InvalidName, routing_word

# A private signal between the SQLite worker and its own retry loop, never raised to callers.
NOT_REFUSALS = {"exchange.storage.sqlite_thread._OpFailed"}


def exception_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(exchange.__path__, "exchange."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def test_every_exception_of_the_package_is_an_exchange_error_with_a_known_code() -> None:
    classes = exception_classes()
    assert {BusError, PublishError, ConsumeError, CanonicalizationError, InvalidName} <= set(
        classes
    )
    strays = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if not issubclass(cls, ExchangeError)
        and f"{cls.__module__}.{cls.__qualname__}" not in NOT_REFUSALS
    ]
    assert strays == []
    for cls in classes:
        if issubclass(cls, ExchangeError):
            assert cls.code in ERROR_TABLE, cls


def test_bus_errors_carry_their_own_codes_and_statuses() -> None:
    assert (PublishError("nacked").code, PublishError("nacked").http_status) == (
        "bus.publish_failed",
        503,
    )
    assert ConsumeError("no queue").code == "bus.consume_failed"
    assert BusError("not connected").diagnostics() == "bus.failed: not connected"


def test_the_errors_that_were_value_errors_still_are_and_keep_their_message() -> None:
    with pytest.raises(ValueError, match=r"^name 'a\.b' is not one routing-key word") as bad:
        routing_word("a.b")
    assert isinstance(bad.value, InvalidName) and bad.value.code == "config.invalid"
    with pytest.raises(ValueError) as nan:
        canonicalize({"x": float("nan")})
    assert isinstance(nan.value, CanonicalizationError)
    assert nan.value.code == "json.not_canonical"
    assert str(nan.value).startswith("no RFC 8785 form")
