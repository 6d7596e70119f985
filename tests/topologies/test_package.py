import inspect

import topologies


def test_public_api_resolves_and_is_documented():
    assert topologies.__all__ == sorted(topologies.__all__, key=lambda s: (s.islower(), s))
    for name in topologies.__all__:
        obj = getattr(topologies, name)
        if inspect.isfunction(obj):
            doc = inspect.getdoc(obj) or ""
            assert "Examples" in doc, f"{name} has no Examples section"
            assert all(
                p.annotation is not inspect.Parameter.empty
                for p in inspect.signature(obj).parameters.values()
            ), name


def test_unknown_attribute():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        topologies.nope  # noqa: B018
