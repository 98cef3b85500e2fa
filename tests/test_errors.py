"""One exception root: every exception class the gateway defines derives from GatewayError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import yaml

import bridge
from bridge.errors import GatewayError
from bridge.mdns import wire


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(bridge.__path__, "bridge."):
        if info.name.endswith("__main__"):
            continue  # importing it runs the command
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_of_the_gateway_derives_from_the_root() -> None:
    found = defined_exceptions()
    names = {f"{e.__module__}.{e.__qualname__}" for e in found}
    assert {"bridge.config.ConfigError", "bridge.mdns.wire.WireError"} <= names, names
    # a YAML constructor error that the config loader raises inside PyYAML and catches itself
    inside_yaml = {e for e in found if issubclass(e, yaml.YAMLError)}
    strays = [e for e in found if not issubclass(e, GatewayError) and e not in inside_yaml]
    assert not strays, strays


ONE_QUESTION = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 11, ONE_QUESTION + b"\x05ab", ONE_QUESTION + b"\xc0\x0c\x00\x01\x00\x01"],
)
def test_a_wire_error_is_a_gateway_error_with_a_reason(data: bytes) -> None:
    with pytest.raises(GatewayError) as err:
        wire.parse(data)
    assert isinstance(err.value, wire.WireError)
    assert err.value.reason and " " not in err.value.reason
