"""Which git urls paasport hands to git (deploy.git.check_git_url), as a table."""

from __future__ import annotations

import pytest

from paasport.deploy.git import GitRepo, check_git_url
from paasport.errors import UsageError


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("/srv/git/web", None),
        ("../repos/web", None),
        ("file:///srv/git/web.git", None),
        ("https://git.example.com/web.git", None),
        ("ssh://git@git.example.com/web.git", None),
        ("git@git.example.com:services/web.git", None),
        ("-uProxyCommand=touch /tmp/pwned", "must not start with '-'"),
        ("--upload-pack=touch /tmp/pwned", "must not start with '-'"),
        ("ext::sh -c touch% /tmp/pwned", "URLs (such as ext::) are not supported"),
        ("fd::3", "URLs (such as ext::) are not supported"),
        ("EXT::sh", "URLs (such as ext::) are not supported"),
    ],
)
def test_check_git_url(url: str, refused: str | None) -> None:
    why = check_git_url(url)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why and repr(url) in why
        with pytest.raises(UsageError, match="git url"):
            GitRepo(url)
