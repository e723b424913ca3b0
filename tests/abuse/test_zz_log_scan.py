"""The whole-suite token scan's verdict (ordered last by tests/conftest.py), and its self-tests.

The session also fails in ``pytest_sessionfinish`` on a leak found after this test (a server
stopped by a session fixture); this test is where the failure is readable, and where the scan
proves it looked at something.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from . import logscan


def _ran(request: pytest.FixtureRequest, suite: str) -> bool:
    return any(
        suite in item.path.parts and item.path.name != Path(__file__).name
        for item in request.session.items
    )


def test_no_test_token_reached_any_log_line_of_the_session(request: pytest.FixtureRequest) -> None:
    scan = logscan.SCAN
    scan.scan_files(final=True)  # every server of the session has stopped by now
    print(scan.report())
    others = [item for item in request.session.items if item.path != Path(__file__)]
    if not others:
        pytest.skip("nothing ran before the scan")
    assert set(logscan.KNOWN_TOKENS) <= set(scan.tokens)
    # Not vacuous: every server log file registered was read, and the suites that run servers
    # produced lines and records.
    assert not scan.unread_files(), f"server logs never read: {scan.unread_files()}"
    if _ran(request, "abuse") or _ran(request, "e2e") or _ran(request, "compat"):
        assert len(scan.files) >= 1 and scan.file_lines >= 20, scan.report()
    if _ran(request, "integration"):
        assert scan.records >= 1, scan.report()
    failing = scan.failing()
    assert not failing, scan.report()


def test_the_scan_finds_a_token_in_a_file_literally_or_percent_encoded(tmp_path: Path) -> None:
    scan = logscan.LogScan()
    log = tmp_path / "server.log"
    log.write_text(
        'INFO: 127.0.0.1:1 - "WebSocket /?authToken=[redacted]" [accepted]\n'
        'INFO: 127.0.0.1:2 - "WebSocket /?auth%54oken=alice%2Dtoken" [accepted]\n'
        "DEBUG: sec-websocket-protocol: Authorization,bob-token\n"
        "partial line without a newline: tok-ann"
    )
    scan.register_file(log)
    scan.scan_files()
    assert [leak.token for leak in scan.leaks] == ["alice-token", "bob-token"]
    assert scan.file_lines == 3
    scan.scan_files(final=True)
    assert [leak.token for leak in scan.leaks][-1] == "tok-ann"
    assert scan.file_lines == 4


def test_the_scan_sees_records_after_logger_filters_and_skips_client_loggers() -> None:
    scan = logscan.LogScan()
    scan.tokens["zz-planted-secret"] = False
    redacting = logging.getLogger("abuse.selftest.redacting")
    redacting.addFilter(_Redact())
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    names = ("abuse.selftest.redacting", "abuse.selftest.plain", "websockets.client.selftest")
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(keep)
        logger.propagate = False
        try:
            logger.warning("upgrade with %s", "?authToken=zz-planted-secret")
        finally:
            logger.removeHandler(keep)
            logger.propagate = True
    redacting.filters.clear()
    assert len(records) == 3
    for record in records:
        scan.scan_record(record.name, record)
    assert [leak.source for leak in scan.leaks] == ["log record abuse.selftest.plain:WARNING"]
    assert scan.records == 2


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.args = tuple(
            str(arg).replace("zz-planted-secret", "[redacted]") for arg in record.args or ()
        )
        return True


def test_the_in_process_hook_is_installed() -> None:
    before = logscan.SCAN.records
    logging.getLogger("abuse.selftest.hook").warning("a record the session scan must count")
    assert logscan.SCAN.records == before + 1
