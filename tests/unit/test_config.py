"""Settings: protected mode and the secret-in-argv warning."""

import pytest

from catena.config import protected_mode, secret_in_argv
from catena.errors import ConfigError


@pytest.mark.parametrize("listen", ["127.0.0.1:6370", "127.0.2.9:6370", "localhost:6370", "[::1]:6370", "::1:6370"])
def test_loopback_needs_no_credentials(listen):
    protected_mode("member", listen, None, None)


@pytest.mark.parametrize("listen", ["0.0.0.0:6370", "10.0.0.5:6370", "[::]:6370", "db.example:6370"])
def test_a_reachable_address_needs_a_password_or_a_secret(listen):
    with pytest.raises(ConfigError, match="refusing to listen"):
        protected_mode("member", listen, None, None)
    protected_mode("member", listen, "pw", None)
    protected_mode("member", listen, None, "s3cret")


def test_secret_in_argv_is_noticed():
    assert secret_in_argv(["member", "--secret", "x"]) and secret_in_argv(["--secret=x"])
    assert not secret_in_argv(["member", "--secret-file", "/f"])


def test_roles_matrix():
    """Who may run DATA, INTERNAL and ADMIN commands, with and without a secret / admin password."""
    from catena.resp.commands import ADMIN, DATA, INTERNAL, CommandTable

    open_table = CommandTable()  # no secret, no admin password: a loopback-only setup
    assert all(open_table.permitted("default", r) for r in (DATA, INTERNAL, ADMIN))
    secured = CommandTable("pw", cluster_secret="s")
    assert secured.permitted("default", DATA)
    assert not secured.permitted("default", INTERNAL) and not secured.permitted("default", ADMIN)
    assert secured.permitted("catena", INTERNAL) and secured.permitted("catena", ADMIN)
    operated = CommandTable(cluster_secret="s", admin_password="op")
    assert operated.permitted("admin", ADMIN) and not operated.permitted("admin", INTERNAL)
    admin_only = CommandTable(admin_password="op")
    assert not admin_only.permitted("default", ADMIN) and admin_only.permitted("default", INTERNAL)
