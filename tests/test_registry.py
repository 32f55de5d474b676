import pytest

from mmunlearn.registry import Registry, UnknownNameError


def test_register_create_names():
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    class B:
        def __init__(self, x: int = 1) -> None:
            self.x = x

    reg.register("a")(dict)
    assert reg.names() == ["a", "b"]
    assert reg.create("b", x=5).x == 5
    assert "b" in reg and "c" not in reg


def test_unknown_name_lists_known_ones():
    reg: Registry[object] = Registry("widget")
    reg.register("alpha")(dict)
    reg.register("beta")(list)
    with pytest.raises(UnknownNameError) as e:
        reg.create("gamma")
    assert str(e.value) == "unknown widget 'gamma'; known widgets: alpha, beta"


def test_double_registration_is_an_error():
    reg: Registry[object] = Registry("widget")
    reg.register("a")(dict)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(list)


def test_every_method_declares_a_stage_of_the_survey():
    from mmunlearn.protectors import PROTECTORS
    from mmunlearn.stages import STAGES
    from mmunlearn.unlearn import UNLEARNERS

    assert {PROTECTORS.get(n).stage for n in PROTECTORS.names()} == {"data-side"}
    stages = {n: UNLEARNERS.get(n).stage for n in UNLEARNERS.names()}
    assert set(stages.values()) <= set(STAGES) - {"data-side"}
    assert stages["retrain"] == "reference" and stages["ccu"] == "training-time"
