"""Client limits as settings (catena.resp.limits, catena.cli): Redis's units, flags, CATENA_*
variables and the TOML file, with bad values refused before anything starts."""

import pytest

from catena import cli
from catena.config import apply_defaults
from catena.errors import ConfigError
from catena.resp.limits import GB, MB, Limits, parse_output_limit, parse_size

BASE = ["member", "--listen", "127.0.0.1:7000", "--data-dir", "/tmp/x"]


def _limits(argv, config=None):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[argv[0]]
    apply_defaults(sub, argv[0], config)
    args = parser.parse_args(argv)
    return cli._limits(args), args


def test_sizes_as_redis_writes_them():
    assert [parse_size(s) for s in ("1048576", "64mb", "1gb", "1k", "1kb", "2M", "512MB")] == \
        [1 << 20, 64 * MB, GB, 1000, 1024, 2_000_000, 512 * MB]
    for bad in ("", "-1", "1.5mb", "10b", "12tb", "lots"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_output_limit("256mb 64mb 60") == (256 * MB, 64 * MB, 60.0)
    with pytest.raises(ValueError):
        parse_output_limit("256mb 64mb")


def test_defaults_flags_environment_and_toml(tmp_path, monkeypatch):
    limits, args = _limits(BASE)
    assert limits == Limits() == Limits(10_000, 256 * MB, 64 * MB, 60.0, GB, 2 * GB)
    assert args.proto_max_bulk_len == 512 * MB
    limits, args = _limits(BASE + ["--maxclients", "5", "--client-output-buffer-limit", "8mb 0 0",
                                   "--client-query-buffer-limit", "1mb", "--max-input-buffer", "4mb",
                                   "--max-bulk-len", "64kb"])
    assert limits == Limits(5, 8 * MB, 0, 0.0, MB, 4 * MB) and args.proto_max_bulk_len == 65536
    toml = tmp_path / "catena.toml"
    toml.write_text('[member]\nmaxclients = 7\nclient-output-buffer-limit = "1mb 512kb 5"\n'
                    'proto-max-bulk-len = "1mb"\n')
    monkeypatch.setenv("CATENA_MAX_INPUT_BUFFER", "3gb")
    limits, args = _limits(BASE, str(toml))
    assert limits == Limits(7, MB, 512 * 1024, 5.0, GB, 3 * GB) and args.proto_max_bulk_len == MB
    limits, _ = _limits(["coordinator", "--listen", "127.0.0.1:7000", "--maxclients", "3"])
    assert limits.maxclients == 3


@pytest.mark.parametrize("env, value", [("CATENA_MAXCLIENTS", "0"), ("CATENA_CLIENT_OUTPUT_BUFFER_LIMIT", "1mb"),
                                        ("CATENA_CLIENT_QUERY_BUFFER_LIMIT", "-5")])
def test_a_bad_setting_is_refused_with_its_name(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=env.removeprefix("CATENA_").lower()):
        _limits(BASE)


def test_a_bad_toml_value_is_refused(tmp_path):
    toml = tmp_path / "catena.toml"
    toml.write_text("[member]\nmaxclients = 0\n")
    with pytest.raises(ConfigError, match="maxclients must be at least 1"):
        _limits(BASE, str(toml))


def test_a_bad_flag_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        _limits(BASE + ["--maxclients", "-1"])
    assert "expected a positive integer" in capsys.readouterr().err
