"""Checkers of recorded client histories: linearizability per key."""

from catena.check.history import History, Operation
from catena.check.commands import CommandModel
from catena.check.linearizability import CheckResult, Model, RegisterModel, check

__all__ = ["CheckResult", "CommandModel", "History", "Model", "Operation", "RegisterModel", "check"]
