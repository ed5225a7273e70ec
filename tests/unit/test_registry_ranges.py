"""The download decision (atlas_ci/registry/ranges.py): headers and (size, ETag) in, answer out."""

from __future__ import annotations

import time

import pytest

from atlas_ci.registry.ranges import MAX_FIELD, UNSATISFIABLE, Answer, decide, parse_range

SIZE = 10_000
ETAG = '"' + "ab" * 32 + '"'
OTHER = '"' + "cd" * 32 + '"'


def get(method: str = "GET", size: int = SIZE, etag: str | None = ETAG, **fields: str) -> Answer:
    """``decide`` with one line per keyword (``If_None_Match="..."`` is If-None-Match)."""
    return decide(method, size, etag, {k.replace("_", "-"): [v] for k, v in fields.items()})


def whole(answer: Answer, size: int = SIZE) -> None:
    assert (answer.status, answer.offset, answer.length) == (200, 0, size)
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert "Content-Range" not in answer.headers
    assert answer.has_file_body


def partial(answer: Answer, first: int, last: int, size: int = SIZE) -> None:
    assert (answer.status, answer.offset, answer.length) == (206, first, last - first + 1)
    assert answer.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert answer.headers["ETag"] == ETAG
    assert answer.has_file_body


def unsatisfiable(answer: Answer, size: int = SIZE) -> None:
    assert (answer.status, answer.length) == (416, 0)
    assert answer.headers["Content-Range"] == f"bytes */{size}"
    assert answer.reason.startswith("the range ")
    assert not answer.has_file_body


# -- no conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_plain_request_gets_the_whole_file_with_accept_ranges_and_etag(method: str) -> None:
    answer = get(method)
    whole(answer)
    assert answer.headers["ETag"] == ETAG


def test_a_file_without_a_sha256_has_no_etag() -> None:
    answer = get(etag=None)
    whole(answer)
    assert "ETag" not in answer.headers


# -- Range -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "first", "last"),
    [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=0-0", 0, 0),
        ("bytes=0-", 0, SIZE - 1),
        ("bytes=500-", 500, SIZE - 1),
        ("bytes=9999-", 9999, 9999),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        ("bytes=-1", SIZE - 1, SIZE - 1),
        ("bytes=-10000", 0, SIZE - 1),
        ("bytes=-99999", 0, SIZE - 1),  # a suffix longer than the file: all of it
        ("bytes=9000-20000", 9000, SIZE - 1),  # last-pos past the end: clipped
        ("bytes=0-" + "9" * 5000, 0, SIZE - 1),  # 5,000 digits: past the end, clipped
        ("bytes=-" + "9" * 5000, 0, SIZE - 1),
        ("bytes=" + "0" * 3000 + "7-" + "0" * 3000 + "9", 7, 9),  # leading zeros are digits
        ("BYTES=1-2", 1, 2),  # the unit is case-insensitive
        ("bytes=1-2,", 1, 2),  # empty list elements are allowed
        ("bytes=, ,1-2 , ", 1, 2),
        ("  bytes=1-2\t", 1, 2),
    ],
)
def test_one_satisfiable_range_is_206_with_content_range(value: str, first: int, last: int) -> None:
    partial(get(Range=value), first, last)


@pytest.mark.parametrize(
    "value",
    [
        "bytes=10000-",  # first-pos == size
        "bytes=10000-10005",
        "bytes=" + "9" * 25 + "-",  # a huge first-pos
        "bytes=-0",  # a suffix of nothing
    ],
)
def test_a_range_past_the_end_is_416_with_the_size(value: str) -> None:
    unsatisfiable(get(Range=value))


def test_every_range_of_an_empty_file_is_416() -> None:
    for value in ("bytes=0-", "bytes=0-0", "bytes=-5"):
        unsatisfiable(get(size=0, Range=value), size=0)
    whole(get(size=0), size=0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=,,",
        "bytes=-",
        "bytes=5",
        "bytes=5-4",  # last-pos before first-pos
        "bytes=a-b",
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=-+5",
        "bytes=1 -2",
        "bytes=1--2",
        "bytes=0x10-0x20",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits are not DIGIT
        "bytes=1-2-3",
        "bytes = 1-2",
        "bytes=1-2;q=1",
        "items=1-2",  # a unit the registry does not know: ignored (RFC 9110 14.2)
        "none",
        "\x00\xff garbage",
        "bytes=1-2\x00",
    ],
)
def test_a_malformed_range_is_ignored_and_the_whole_file_sent(value: str) -> None:
    whole(get(Range=value))


@pytest.mark.parametrize(
    "value",
    [
        "bytes=0-0,-1",
        "bytes=0-99,200-299",
        "bytes=0-99,0-99",
        "bytes=20000-,30000-",  # even when none of them is satisfiable
        "bytes=" + ",".join(f"{n}-{n}" for n in range(1000)),
    ],
)
def test_several_ranges_are_answered_whole(value: str) -> None:
    whole(get(Range=value))


def test_two_range_fields_are_ignored() -> None:
    whole(decide("GET", SIZE, ETAG, {"Range": ["bytes=0-1", "bytes=2-3"]}))


def test_head_ignores_range_but_has_the_headers_of_get() -> None:
    head = get("HEAD", Range="bytes=0-99")
    whole(head)
    assert head.headers == get("GET").headers


def test_a_range_at_the_largest_file_size() -> None:
    size = 2**63 - 1
    partial(get(size=size, Range=f"bytes={size - 1}-"), size - 1, size - 1, size=size)
    partial(get(size=size, Range="bytes=-2"), size - 2, size - 1, size=size)


def test_parse_range_directly() -> None:
    assert parse_range("bytes=1-2", 3) == (1, 2)
    assert parse_range("bytes=3-", 3) == UNSATISFIABLE
    assert parse_range("bytes=2-1", 3) is None
    assert parse_range("bytes=0-0," * (MAX_FIELD // 8), 3) is None


# -- If-Range ----------------------------------------------------------------------------------


def test_if_range_with_the_files_etag_keeps_the_range() -> None:
    partial(get(Range="bytes=5-9", If_Range=ETAG), 5, 9)
    partial(get(Range="bytes=5-9", If_Range=f"  {ETAG} "), 5, 9)


@pytest.mark.parametrize(
    "value",
    [
        OTHER,  # the file changed: start again
        "W/" + ETAG,  # a weak tag never validates a range
        "Mon, 07 Dec 2026 19:00:00 GMT",  # no Last-Modified to compare a date with
        "*",
        f"{ETAG}, {ETAG}",
        ETAG[:-1],
        "",
        "garbage",
    ],
)
def test_if_range_with_anything_else_gets_the_whole_file(value: str) -> None:
    whole(get(Range="bytes=5-9", If_Range=value))


def test_if_range_without_an_etag_gets_the_whole_file() -> None:
    whole(get(etag=None, Range="bytes=5-9", If_Range=ETAG), SIZE)


def test_if_range_that_fails_wins_over_an_unsatisfiable_range() -> None:
    # RFC 9110 13.2.2 step 5: a false If-Range means the Range is ignored, so no 416.
    whole(get(Range="bytes=20000-", If_Range=OTHER))
    unsatisfiable(get(Range="bytes=20000-", If_Range=ETAG))


def test_if_range_without_range_is_ignored() -> None:
    whole(get(If_Range=OTHER))


def test_two_if_range_fields_get_the_whole_file() -> None:
    fields = {"Range": ["bytes=0-1"], "If-Range": [ETAG, ETAG]}
    whole(decide("GET", SIZE, ETAG, fields))


# -- If-None-Match -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ETAG,
        "*",
        " * ",
        "W/" + ETAG,  # weak comparison: a weak tag with the same opaque part matches
        f'"x", {ETAG}',
        f'"x",{ETAG},"y"',
        f'W/"x" ,\t{ETAG}',
        f", ,{ETAG},,",
        f'"a,b", {ETAG}',  # a comma inside a tag is part of it
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_naming_the_file_is_304_without_a_body(method: str, value: str) -> None:
    answer = get(method, If_None_Match=value)
    assert (answer.status, answer.length) == (304, 0)
    assert dict(answer.headers) == {"ETag": ETAG}
    assert not answer.has_file_body


def test_if_none_match_wins_over_range() -> None:
    assert get(Range="bytes=0-1", If_None_Match=ETAG).status == 304
    assert get(Range="bytes=20000-", If_None_Match=ETAG).status == 304


def test_if_none_match_over_several_lines_is_one_list() -> None:
    answer = decide("GET", SIZE, ETAG, {"If-None-Match": ['"x"', ETAG]})
    assert answer.status == 304


@pytest.mark.parametrize(
    "value",
    [
        OTHER,
        f'"x", {OTHER}',
        ETAG.upper(),  # tags compare octet by octet
        ETAG[1:-1],  # unquoted: malformed, ignored
        f"w/{ETAG}",  # W/ is case-sensitive
        f"{ETAG} {ETAG}",  # no comma between
        f"*, {ETAG}",  # * is only allowed alone
        f"{ETAG}, garbage",
        '"unterminated',
        '"a"b"',
        "",
        "\x00",
        f'"\x7f", {ETAG[:-1]}',
    ],
)
def test_if_none_match_not_naming_the_file_sends_it(value: str) -> None:
    whole(get(If_None_Match=value))


def test_if_none_match_star_matches_a_file_without_etag_but_no_tag_does() -> None:
    assert get(etag=None, If_None_Match="*").status == 304
    whole(get(etag=None, If_None_Match=ETAG))


def test_if_none_match_with_a_range_that_does_not_match_keeps_the_range() -> None:
    partial(get(Range="bytes=0-9", If_None_Match=OTHER), 0, 9)


# -- If-Match ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [ETAG, "*", f'"x", {ETAG}'])
def test_if_match_naming_the_file_sends_it(value: str) -> None:
    whole(get(If_Match=value))
    partial(get(If_Match=value, Range="bytes=1-1"), 1, 1)


@pytest.mark.parametrize("value", [OTHER, "W/" + ETAG, "garbage", ""])
def test_if_match_not_naming_the_file_strongly_is_412(value: str) -> None:
    answer = get(If_Match=value, Range="bytes=0-1", If_None_Match=ETAG)
    assert (answer.status, answer.length) == (412, 0)
    assert "If-Match" in answer.reason


# -- hostile input: bounded work ---------------------------------------------------------------


def _timed(fields: dict[str, list[str]]) -> tuple[Answer, float]:
    started = time.perf_counter()
    answer = decide("GET", SIZE, ETAG, fields)
    return answer, time.perf_counter() - started


@pytest.mark.parametrize(
    "fields",
    [
        {"Range": ["bytes=" + "1-2," * 16_000]},
        {"Range": ["bytes=" + "9" * 60_000 + "-"]},
        {"Range": ["bytes=0-" + "9" * 60_000]},
        {"Range": ["bytes=" + "," * 60_000 + "1-2"]},
        {"Range": ["bytes=" + " " * 60_000]},
        {"If-None-Match": ['"a",' * 15_000]},
        {"If-None-Match": ["W/" * 30_000]},
        {"If-None-Match": ['"' + "\x21" * 60_000]},
        {"If-None-Match": ['"x", ' * 100 + "!"] * 100},
        {"If-Match": [ETAG + "," * 60_000]},
        {"If-Range": ["x" * 60_000], "Range": ["bytes=0-1"]},
        # Just under the bound, so every character is looked at.
        {"Range": ["bytes=" + "1-2," * 2000]},
        {"Range": ["bytes=" + "0" * 8000 + "-"]},  # position 0: the whole file, as 206
        {"If-None-Match": ['"a",' * 2000 + "!"]},
        {"If-Match": ['W/"",' * 1600]},
    ],
    ids=lambda fields: "+".join(fields),
)
def test_hostile_fields_are_refused_quickly_with_a_safe_answer(
    fields: dict[str, list[str]],
) -> None:
    # The HTTP parser lets a field line reach 64 KiB; none of these may take long or send
    # anything but the whole file (200, or 206 for a range of all of it) or a 412.
    answer, elapsed = _timed(fields)
    assert answer.status in (200, 206, 412)
    if answer.has_file_body:
        assert (answer.offset, answer.length) == (0, SIZE)
    assert elapsed < 0.5, f"{elapsed:.3f} s"  # milliseconds; only a blow-up fails


def test_a_long_but_valid_if_none_match_list_is_read() -> None:
    value = ", ".join(f'"{n:064x}"' for n in range(100)) + ", " + ETAG
    assert len(value) < MAX_FIELD
    assert get(If_None_Match=value).status == 304
    too_long = ", ".join(f'"{n:064x}"' for n in range(200)) + ", " + ETAG
    assert len(too_long) > MAX_FIELD
    whole(get(If_None_Match=too_long))  # past the bound: treated as malformed, file sent
