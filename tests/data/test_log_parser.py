"""Tests for src/data/log_parser.py: one access-log line at a time, lines built in the test."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from src.data.log_parser import LineError, parse_line, parse_timestamp, split_request

TIME = "[10/Oct/2000:13:55:36 -0700]"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def combined(
    client: str = "192.0.2.10",
    time_field: str = TIME,
    request: str = "GET /index.html HTTP/1.1",
    status: str = "200",
    size: str = "2326",
    referrer: str = "http://example.com/start",
    user_agent: str = UA,
    extra: str = "",
) -> str:
    """Build one combined-format line. Quoted fields are inserted exactly as given."""
    return f'{client} - frank {time_field} "{request}" {status} {size} "{referrer}" "{user_agent}"{extra}'


def reason_of(line: str) -> str:
    with pytest.raises(LineError) as caught:
        parse_line(line)
    return caught.value.reason


def test_combined_line_fields():
    event = parse_line(combined())

    assert event["ts"] == datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert event["client_ip"] == "192.0.2.10"
    assert event["method"] == "GET"
    assert event["path"] == "/index.html"
    assert event["protocol"] == "HTTP/1.1"
    assert event["status"] == 200
    assert event["bytes"] == 2326
    assert event["referrer"] == "http://example.com/start"
    assert event["user_agent"] == UA
    assert event["source_format"] == "combined"
    assert "source" not in event
    assert "line_no" not in event


def test_common_line_has_empty_referrer_and_agent():
    event = parse_line('192.0.2.10 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 12')

    assert event["source_format"] == "common"
    assert event["referrer"] == ""
    assert event["user_agent"] == ""
    assert event["bytes"] == 12


def test_dash_status_bytes_are_null():
    event = parse_line(combined(status="-", size="-"))

    assert event["status"] is None
    assert event["bytes"] is None


def test_dash_referrer_and_agent_are_empty():
    event = parse_line(combined(referrer="-", user_agent="-"))

    assert event["referrer"] == ""
    assert event["user_agent"] == ""


def test_apache_escaped_quotes_unescaped():
    event = parse_line(combined(user_agent=r'}__test|O:21:\"JDatabaseDriverMysqli\":3:{s:2:\"fc\"'))

    assert event["user_agent"] == '}__test|O:21:"JDatabaseDriverMysqli":3:{s:2:"fc"'


def test_nginx_hex_escaped_quote_unescaped():
    event = parse_line(combined(user_agent=r"say \x22hi\x22 and \X22bye\X22"))

    assert event["user_agent"] == 'say "hi" and "bye"'


def test_escaped_backslash_before_closing_quote():
    # The field ends with an escaped backslash, so the quote after it closes the field.
    event = parse_line(combined(user_agent="agent\\\\", referrer=r"a\\\"b"))

    assert event["user_agent"] == "agent\\"
    assert event["referrer"] == 'a\\"b'


def test_escaped_backslash_x22_stays_literal():
    # "\\x22" is an escaped backslash followed by the text x22, not an escaped quote.
    event = parse_line(combined(user_agent=r"a\\x22b"))

    assert event["user_agent"] == r"a\x22b"


def test_other_escapes_stay_as_written():
    event = parse_line(combined(referrer=r"http://\xe4\xe5.\xf0\xf4/"))

    assert event["referrer"] == r"http://\xe4\xe5.\xf0\xf4/"


def test_escaped_quote_in_request_line():
    event = parse_line(combined(request=r"GET /search?q=\"x\" HTTP/1.1"))

    assert event["path"] == '/search?q="x"'
    assert event["protocol"] == "HTTP/1.1"


@pytest.mark.parametrize(
    "client",
    ["2001:db8::1", "[2001:db8::1]", "fe80::1%eth0", "::ffff:192.0.2.1", "crawl-66-249-66-1.googlebot.com"],
)
def test_client_address_forms_accepted(client):
    event = parse_line(combined(client=client))

    assert event["client_ip"] == client


@pytest.mark.parametrize("client", ["999.1.1.1", "1.2.3", "192.0.2.01", "2001:db8::g", "bad_host!", "-"])
def test_invalid_client_address(client):
    assert reason_of(combined(client=client)) == "invalid_client_address"


def test_empty_request_line_kept():
    event = parse_line(combined(request="-", status="408", size="-"))

    assert event["method"] == ""
    assert event["path"] == ""
    assert event["protocol"] == ""
    assert event["status"] == 408


def test_blank_request_line_kept():
    event = parse_line(combined(request="", status="400"))

    assert (event["method"], event["path"], event["protocol"]) == ("", "", "")


def test_binary_junk_request_kept():
    event = parse_line(combined(request=r"\x16\x03\x01\x00\xa5\x01\x00\x00", status="400", size="226"))

    assert event["method"] == ""
    assert event["path"] == r"\x16\x03\x01\x00\xa5\x01\x00\x00"
    assert event["protocol"] == ""
    assert event["status"] == 400


def test_http09_request_without_protocol_kept():
    event = parse_line(combined(request="GET /"))

    assert (event["method"], event["path"], event["protocol"]) == ("GET", "/", "")


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("GET / HTTP/1.1", ("GET", "/", "HTTP/1.1")),
        ("POST /form HTTP/2", ("POST", "/form", "HTTP/2")),
        ("get /lower HTTP/1.0", ("get", "/lower", "HTTP/1.0")),
        ("GET /a b HTTP/1.1", ("GET", "/a b", "HTTP/1.1")),
        ("CONNECT example.com:443 HTTP/1.1", ("CONNECT", "example.com:443", "HTTP/1.1")),
        ("GET", ("GET", "", "")),
        ("HTTP/1.1", ("", "HTTP/1.1", "")),
        ("-", ("", "", "")),
        ("", ("", "", "")),
        ("\\x16\\x03 HTTP/1.1", ("", "\\x16\\x03", "HTTP/1.1")),
    ],
)
def test_split_request_cases(request_line, expected):
    assert split_request(request_line) == expected


@pytest.mark.parametrize("extra", [' "-"', ' "-" "abc" "x y"', ' "with \\"quote\\""'])
def test_extra_trailing_quoted_fields_ignored(extra):
    event = parse_line(combined(extra=extra))

    assert event["user_agent"] == UA
    assert event["source_format"] == "combined"


def test_trailing_whitespace_and_cr_ignored():
    event = parse_line(combined() + " \r")

    assert event["user_agent"] == UA


def test_truncated_agent_is_unterminated():
    line = combined()[:-10]

    assert reason_of(line) == "unterminated_quoted_field"


def test_truncated_request_is_unterminated():
    line = '192.0.2.10 - - [10/Oct/2000:13:55:36 -0700] "GET /very/long/pa'

    assert reason_of(line) == "unterminated_quoted_field"


def test_truncated_extra_field_is_unterminated():
    assert reason_of(combined(extra=' "-')) == "unterminated_quoted_field"


def test_unescaped_quote_reported():
    line = combined(user_agent='Mozilla "quoted" agent')

    assert reason_of(line) == "unescaped_quote"


@pytest.mark.parametrize(
    ("status", "size", "reason"),
    [("abc", "12", "invalid_status"), ("2000", "12", "invalid_status"), ("200", "12kb", "invalid_bytes")],
)
def test_invalid_status_or_bytes(status, size, reason):
    assert reason_of(combined(status=status, size=size)) == reason


def test_bytes_beyond_int64_rejected():
    assert reason_of(combined(size="9" * 20)) == "invalid_bytes"


def test_single_trailing_field_unrecognized():
    line = '192.0.2.10 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 12 "-"'

    assert reason_of(line) == "unrecognized_format"


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_empty_line(line):
    assert reason_of(line) == "empty_line"


@pytest.mark.parametrize(
    "line",
    [
        "this is not an access log line",
        '{"ts": "2020-01-01T00:00:00Z"}',
        '192.0.2.10 - - 10/Oct/2000:13:55:36 -0700 "GET / HTTP/1.1" 200 12',
        ' 192.0.2.10 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 12',
    ],
)
def test_unrecognized_format(line):
    assert reason_of(line) == "unrecognized_format"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/Oct/2000:13:55:36 -0700", datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)),
        ("14/Oct/2019:10:50:18 +0200", datetime(2019, 10, 14, 8, 50, 18, tzinfo=UTC)),
        ("17/May/2015:10:05:03 +0000", datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC)),
        ("01/Jan/2020:03:00:00 +0530", datetime(2019, 12, 31, 21, 30, 0, tzinfo=UTC)),
        ("31/Dec/2020:23:30:00 -0945", datetime(2021, 1, 1, 9, 15, 0, tzinfo=UTC)),
        ("29/Feb/2024:00:00:00 +0000", datetime(2024, 2, 29, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_timestamp_converted_to_utc(text, expected):
    parsed = parse_timestamp(text)

    assert parsed == expected
    assert parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "text",
    [
        "10/Okt/2000:13:55:36 -0700",
        "30/Feb/2023:13:55:36 +0000",
        "10/Oct/2000:24:00:00 +0000",
        "10/Oct/2000:13:55:36 +0060",
        "10/Oct/2000 13:55:36 -0700",
        "10/Oct/2000:13:55:36 0700",
        "10/Oct/2000:13:55:36",
        "1/Oct/2000:13:55:36 -0700 ",
        "1a/Oct/2000:13:55:36 -0700",
        "10/Oct/2000:13:55:36.123 -0700",
        "31/Dec/9999:23:59:59 -0100",
        "01/Jan/0000:00:00:00 +0000",
        "",
    ],
)
def test_invalid_timestamp(text):
    with pytest.raises(LineError) as caught:
        parse_timestamp(text)

    assert caught.value.reason == "invalid_timestamp"


def test_invalid_timestamp_in_line():
    assert reason_of(combined(time_field="[10/Oct/2000:13:55:36]")) == "invalid_timestamp"


def test_long_url_parses():
    path = "/search?q=" + "a\\\"b" * 2_000 + "x" * 2_000
    assert len(path) == 10_010

    event = parse_line(combined(request=f"GET {path} HTTP/1.1"))

    assert event["path"] == path.replace('\\"', '"')
    assert event["protocol"] == "HTTP/1.1"


def test_long_truncated_url_diagnosed_quickly():
    # A backtracking quoted-field pattern would take far longer than the bound here.
    line = combined(request="GET /" + "ab\\\"" * 2_500)[:-300]

    started = time.perf_counter()
    reason = reason_of(line)
    elapsed = time.perf_counter() - started

    assert reason == "unterminated_quoted_field"
    assert elapsed < 1.0
