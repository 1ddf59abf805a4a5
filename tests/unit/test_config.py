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
