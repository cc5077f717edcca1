"""Reading the Debian mirror from apt's sources, and the base tarball's cache key."""

from __future__ import annotations

import dataclasses

import pytest

from tests.docker.debian_base import (
    AptSource,
    Recipe,
    debian_mirror,
    host_suite,
    parse_deb822,
    parse_one_line,
)

DEB822 = """\
Types: deb deb-src
# a comment inside a stanza
URIs: http://mirror.example/debian/
Suites: bookworm
  bookworm-updates
Components: main contrib

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


def test_deb822_stanzas_with_continuations_and_disabled_ones():
    sources = parse_deb822(DEB822)
    assert sources[0] == AptSource(("deb", "deb-src"), ("http://mirror.example/debian/",),
                                   ("bookworm", "bookworm-updates"), ("main", "contrib"))
    assert [source.suites for source in sources] == [("bookworm", "bookworm-updates"),
                                                     ("bookworm-security",)]


def test_one_line_sources_with_options_and_comments():
    text = ("# deb http://commented.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://one.example/debian "
            "bookworm main non-free # trailing\n"
            "deb-src http://one.example/debian bookworm main\n")
    assert parse_one_line(text) == [
        AptSource(("deb",), ("https://one.example/debian",), ("bookworm",), ("main", "non-free")),
        AptSource(("deb-src",), ("http://one.example/debian",), ("bookworm",), ("main",)),
    ]


def test_the_mirror_is_the_first_that_serves_the_suite_with_main():
    sources = [
        AptSource(("deb",), ("https://other.example/apt",), ("cloud-sdk-bookworm",), ("main",)),
        AptSource(("deb-src",), ("http://src.example/debian",), ("bookworm",), ("main",)),
        AptSource(("deb",), ("http://contrib.example/debian",), ("bookworm",), ("contrib",)),
        *parse_deb822(DEB822),
    ]
    assert debian_mirror(sources, "bookworm") == "http://mirror.example/debian"
    with pytest.raises(LookupError, match="trixie"):
        debian_mirror(sources, "trixie")


def test_the_suite_comes_from_os_release(tmp_path):
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert host_suite(release) == "bookworm"
    release.write_text('NAME="Something"\n')
    with pytest.raises(LookupError, match="VERSION_CODENAME"):
        host_suite(release)


def test_the_cache_key_changes_with_everything_the_base_is_made_from():
    recipe = Recipe("bookworm", "http://mirror.example/debian", (("proxy.crt", "ab" * 32),))
    keys = {recipe.key,
            dataclasses.replace(recipe, suite="trixie").key,
            dataclasses.replace(recipe, mirror="http://elsewhere.example/debian").key,
            dataclasses.replace(recipe, certificates=()).key}
    assert len(keys) == 4
    assert Recipe(recipe.suite, recipe.mirror, recipe.certificates).key == recipe.key
