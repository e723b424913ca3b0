"""Where the Workbench's redirects point: below the mount point, and never off the site."""

from __future__ import annotations

import pytest

from surge.workbench.server import _page_location


@pytest.mark.parametrize(
    ("root_path", "location"),
    [
        ("", b"/__surge/workbench/"),
        ("/rt", b"/rt/__surge/workbench/"),
        ("/rt/", b"/rt/__surge/workbench/"),
        ("/a b", b"/a%20b/__surge/workbench/"),
        # A protocol-relative Location would send the browser to another host.
        ("//evil.example", b"/evil.example/__surge/workbench/"),
        ("/rt\r\nSet-Cookie: x=1", b"/rt%0D%0ASet-Cookie%3A%20x%3D1/__surge/workbench/"),
    ],
)
def test_the_page_location_stays_below_the_mount_and_on_the_site(
    root_path: str, location: bytes
) -> None:
    assert _page_location({"type": "http", "root_path": root_path}) == location
