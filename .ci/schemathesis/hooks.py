"""Schemathesis hooks for rules a JSON schema cannot state.

- `tz` is an IANA time zone name: the set of valid names is the tz
  database's, so generated values are replaced by real names (the server's
  400 for an unknown name is covered by the API tests).
- `from`/`to` of the cost report must be in order and at most 366 days
  apart (`to` defaults to today): generated valid dates are put in order
  and brought within that.
"""
import datetime
import random

import schemathesis

ZONES = [
    "UTC", "Europe/Paris", "America/New_York", "America/Los_Angeles",
    "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Kiritimati",
    "America/St_Johns", "Africa/Casablanca",
]


@schemathesis.hook
def map_query(context, query):
    if not isinstance(query, dict):
        return query
    if isinstance(query.get("tz"), str):
        query["tz"] = random.choice(ZONES)
    start, end = query.get("from"), query.get("to")
    if isinstance(start, str) and end is None:
        try:
            a = datetime.date.fromisoformat(start)
        except ValueError:
            return query
        today = datetime.datetime.now(datetime.timezone.utc).date()
        earliest = today - datetime.timedelta(days=364)
        query["from"] = min(max(a, earliest), today).isoformat()
        return query
    if isinstance(start, str) and isinstance(end, str):
        try:
            a = datetime.date.fromisoformat(start)
            b = datetime.date.fromisoformat(end)
        except ValueError:
            return query
        a, b = min(a, b), max(a, b)
        if (b - a).days > 365:
            a = b - datetime.timedelta(days=365)
        query["from"], query["to"] = a.isoformat(), b.isoformat()
    return query
