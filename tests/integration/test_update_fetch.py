"""edge_agent/fleet/fetch.py against a real HTTPS server on loopback: a bundle fetched whole,
resumed after cut links with range requests, started over when the server ignores ranges,
never more than the signed size written, the wrong bytes refused and removed, a missing file
final at once, TLS verified, no redirect away from https://; fuzzed cut points."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import pytest
from bundle_server import BundleServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.fleet.fetch import FetchFailed, check_url, fetch
from edge_agent.fleet.refusal import Refused

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture(scope="module")
def server(pki):
    s = BundleServer(pki)
    s.files["/b.tar"] = BODY
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _reset(server):
    server.seen.clear()
    server.cut_after.clear()
    server.ignore_range, server.extra = False, b""
    server.redirects.clear()


def _fetch(server, pki, d, **kw):
    return fetch(server.url("/b.tar"), d, SHA, len(BODY), ca_file=str(pki / "ca.pem"), backoff=0.01, **kw)


def test_a_bundle_is_fetched_whole_with_its_signed_hash_and_owner_only(server, pki, tmp_path):
    got = _fetch(server, pki, tmp_path / "dl")
    assert got.read_bytes() == BODY and got.name == f"{SHA}.bundle"
    assert (
        stat.S_IMODE(got.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "dl").stat().st_mode) == 0o700
    )
    assert _fetch(server, pki, tmp_path / "dl") == got and len(server.seen) == 1  # there already


def test_a_cut_link_is_resumed_from_where_it_broke(server, pki, tmp_path):
    server.cut_after[:] = [100_000, 50_000]
    got = _fetch(server, pki, tmp_path)
    assert got.read_bytes() == BODY
    assert [r for _, r in server.seen] == [None, "bytes=100000-", "bytes=150000-"]


def test_a_later_command_goes_on_from_the_partial_file(server, pki, tmp_path):
    (tmp_path / f"{SHA}.part").write_bytes(BODY[:123_456])  # a stop, a power cut
    assert _fetch(server, pki, tmp_path).read_bytes() == BODY
    assert server.seen == [("/b.tar", "bytes=123456-")]


def test_a_server_that_ignores_ranges_is_read_from_the_start(server, pki, tmp_path):
    server.ignore_range = True
    server.cut_after[:] = [70_000]
    assert _fetch(server, pki, tmp_path).read_bytes() == BODY
    assert len(server.seen) == 2


def test_never_more_than_the_signed_size_is_written(server, pki, tmp_path):
    server.extra = b"x" * 1_000_000
    got = _fetch(server, pki, tmp_path, attempts=2)
    assert got.stat().st_size == len(BODY) and got.read_bytes() == BODY


def test_the_wrong_bytes_are_refused_and_removed(server, pki, tmp_path):
    server.files["/other.tar"] = BODY[:-1] + bytes([BODY[-1] ^ 1])
    with pytest.raises(Refused) as e:
        fetch(server.url("/other.tar"), tmp_path, SHA, len(BODY), ca_file=str(pki / "ca.pem"))
    assert e.value.reason == "corrupt_download"
    assert list(tmp_path.iterdir()) == []


def test_a_missing_bundle_is_final_at_once(server, pki, tmp_path):
    with pytest.raises(FetchFailed, match="HTTP 404"):
        fetch(server.url("/none.tar"), tmp_path, SHA, len(BODY), ca_file=str(pki / "ca.pem"))
    assert len(server.seen) == 1


def test_tls_is_verified(server, tmp_path):
    stop = threading.Event()
    with pytest.raises(FetchFailed, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetch(server.url("/b.tar"), tmp_path, SHA, len(BODY), attempts=1, stop=stop)  # system CAs


def test_a_redirect_away_from_https_is_refused(server, pki, tmp_path):
    server.redirects["/b.tar"] = "http://127.0.0.1:1/b.tar"
    with pytest.raises(FetchFailed, match="https:// only"):
        _fetch(server, pki, tmp_path, attempts=1)


@pytest.mark.parametrize(
    "url",
    ["http://example.org/b.tar", "ftp://x/b", "https:///nohost", "file:///etc/passwd", 42, "https://é.org/b"],
)
def test_only_https_urls_are_taken(url):
    with pytest.raises(Refused) as e:
        check_url(url)
    assert e.value.reason == "malformed"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=4), ignore=st.booleans())
def test_any_cut_points_end_in_the_signed_bytes(server, pki, tmp_path_factory, cuts, ignore):
    server.seen.clear()
    server.cut_after[:] = cuts
    server.ignore_range = ignore
    d = tmp_path_factory.mktemp("dl")
    assert _fetch(server, pki, d, attempts=len(cuts) + 1).read_bytes() == BODY
    assert len(server.seen) <= len(cuts) + 1
