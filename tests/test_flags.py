"""Flags generated from config dataclasses: every TrainConfig option round-trips through the command line."""

from __future__ import annotations

import argparse
import typing

import pytest

from generalist.agent.config import SIZES, TrainConfig
from generalist.errors import ConfigError
from generalist.flags import add_flags, flag_fields, from_args, to_flags


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, TrainConfig)
    return p


def test_every_option_round_trips():
    """A config with every flag moved off its default comes back equal from its own flags."""
    changed = {}
    for f, kind in flag_fields(TrainConfig):
        m = f.metadata["flag"]
        if m["choices"]:
            changed[f.name] = m["choices"][-1]
        elif kind is bool:
            changed[f.name] = True
        elif f.name == "data":
            changed[f.name] = ["a", "b c"]
        elif kind is str:
            changed[f.name] = "x y"
        elif typing.get_origin(kind) is dict:
            cast = typing.get_args(kind)[1]
            changed[f.name] = {"t1": cast(2), "t2": cast(3)}
        else:
            changed[f.name] = kind(7)
    want = TrainConfig(**changed)
    assert want != TrainConfig()
    assert from_args(TrainConfig, _parser().parse_args(to_flags(TrainConfig, changed))) == want


def test_defaults_and_choices_come_from_the_dataclass():
    args = _parser().parse_args(["--data", "d", "--out", "o"])
    assert from_args(TrainConfig, args) == TrainConfig(data=["d"], out="o")
    assert _parser()._option_string_actions["--config"].choices == tuple(SIZES)


def test_unknown_option_is_refused():
    with pytest.raises(ConfigError, match="not a TrainConfig option"):
        to_flags(TrainConfig, {"stepz": 3})
    from generalist.pipeline import Suite

    with pytest.raises(ConfigError, match="stepz"):
        Suite(description="x", episodes={}, train={"stepz": 3})
