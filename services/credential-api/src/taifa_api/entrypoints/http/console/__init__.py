"""The customers' web console under `/console/`: server-rendered pages (Jinja2) over the same use cases, cookie
session, CSRF double submit and error codes as the JSON API (docs/console.md)."""
