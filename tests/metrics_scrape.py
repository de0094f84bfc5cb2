"""Scraping a daemon's metrics endpoint over real HTTP, for the tests."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from promql_eval import Scrape


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``GET path`` (an error status is returned, not raised)."""
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{path}")


async def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, body = await get(port, path)
    return status, json.loads(body)


def value(scrape: Scrape, name: str, **labels: str) -> float:
    """The sum of every sample called ``name`` with these labels (0 if none)."""
    want = set(labels.items())
    return sum(v for ls, v in scrape.samples.items() if ("__name__", name) in ls and want <= ls)


def by_label(scrape: Scrape, name: str, label: str) -> dict[str, float]:
    """``name``'s samples summed per value of ``label``, zeros left out."""
    out: dict[str, float] = {}
    for ls, v in scrape.samples.items():
        have = dict(ls)
        if have["__name__"] == name and label in have and v:
            out[have[label]] = out.get(have[label], 0.0) + v
    return out


@dataclass
class Scraper:
    port: int
    scrapes: list[Scrape] = field(default_factory=list)

    async def scrape(self) -> Scrape:
        status, text = await get(self.port, "/metrics")
        assert status == 200, text
        s = Scrape.parse(time.time(), text)
        self.scrapes.append(s)
        return s
