"""The console: web pages for contact points, prosecutors, auditors and administrators,
served by the gateway itself at /console/ (see `exchange.console.app`)."""
