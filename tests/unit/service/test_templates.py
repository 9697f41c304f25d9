"""Command templates: registry loading, user-parameter schema, configs and argv."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from scopeflow.core.config import load_config
from scopeflow.core.errors import ConfigError, UnknownNameError
from scopeflow.pipelines import get_pipeline
from scopeflow.service import templates as templates_module
from scopeflow.service.templates import (
    Resources,
    Template,
    TemplateCache,
    TemplateRegistry,
    build_argv,
)
from tests.conftest import cli_env

EXAMPLE = Path(templates_module.__file__).with_name("templates.example.yaml")
EVIL = "; rm -rf / $(touch {marker}) `touch {marker}` && echo pwned | sh"


@pytest.fixture(scope="module")
def registry() -> TemplateRegistry:
    return TemplateRegistry.load(EXAMPLE)


def write_registry(tmp_path: Path, *templates: dict[str, Any]) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump({"templates": list(templates)}), encoding="utf-8")
    return path


def toy(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "toy",
        "pipeline": "toy",
        "fixed": {"write_files": True},
        "user_parameters": ["units", "fail_units"],
    }
    entry.update(overrides)
    return entry


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return dict(exc.value.problems)


# -- registry ---------------------------------------------------------------------------------


def test_example_registry_loads(registry: TemplateRegistry) -> None:
    assert registry.names() == ["cyto-ifc", "example-segment", "spim-fusion", "toy"]
    assert len(registry) == 4
    assert "toy" in registry
    assert [t.name for t in registry] == registry.names()
    spim = registry.get("spim-fusion")
    assert spim.pipeline == "spim"
    assert spim.resources.engine_workers == 8
    assert spim.resources.memory_mb == 32 * 1024
    assert spim.resources.walltime_seconds == 4 * 3600
    # dotted and nested keys mean the same
    assert spim.fixed["registration"] == {"transformation_model": "affine"}


def test_unknown_template(registry: TemplateRegistry) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown template 'nope'.*cyto-ifc"):
        registry.get("nope")


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"pipeline": "nosuch"}, "pipeline", "unknown pipeline 'nosuch'"),
        ({"user_parameters": ["units", "unitz"]}, "user_parameters[1]", "'unitz' is not a field"),
        ({"user_parameters": ["units.x"]}, "user_parameters[0]", "not a field"),
        ({"fixed": {"detection.sigma": 2}}, "fixed.detection", "not a field"),
        ({"fixed": {"units": 3}}, "user_parameters[0]", "'units' is fixed"),
        ({"user_parameters": ["units", "units"]}, "user_parameters[1]", "listed twice"),
        ({"fixed": {"units": "many"}, "user_parameters": []}, "fixed.units", "integer"),
        ({"defaults": {"sleep": 1.0}}, "defaults.sleep", "not a parameter users may set"),
        ({"defaults": {"units": 0}}, "defaults.units", "greater than or equal to 1"),
        ({"name": "Bad Name"}, "name", "should match pattern"),
        ({"resources": {"walltime": "1 hour"}}, "resources.walltime", "pattern"),
        ({"resources": {"memory": "16 GB"}}, "resources.memory", "pattern"),
        ({"resources": {"cores": 0}}, "resources.cores", "greater than or equal to 1"),
        ({"resources": {"cluster": "pbs"}}, "resources.cluster", "'local' or 'slurm'"),
        ({"command": "rm -rf /"}, "command", "unknown key"),
    ],
)
def test_load_errors_name_file_template_and_field(
    tmp_path: Path, overrides: dict[str, Any], key: str, message: str
) -> None:
    path = write_registry(tmp_path, toy(**overrides))
    with pytest.raises(ConfigError) as exc:
        TemplateRegistry.load(path)
    assert str(path) in str(exc.value)
    found = {k: m for k, m in exc.value.problems if key in k}
    assert found, exc.value
    assert any(message in m for m in found.values()), exc.value
    label = overrides.get("name", "toy")
    assert any(k.startswith(f"template {label!r}") for k in dict(exc.value.problems))


def test_load_errors_overlap_root_required_and_duplicates(tmp_path: Path) -> None:
    spim = {
        "name": "spim",
        "pipeline": "spim",
        "fixed": {"root": "/data", "detection": {"sigma": 2.0}},
        "user_parameters": ["detection", "angles"],
    }
    path = write_registry(tmp_path, spim, toy(), toy())
    with pytest.raises(ConfigError) as exc:
        TemplateRegistry.load(path)
    text = str(exc.value)
    assert "fixed.root: set by the service" in text
    assert "'detection' overlaps 'detection.sigma', which is fixed" in text
    for required in ("input", "ntimepoints", "voxel_size"):
        assert f"required field {required!r} is neither fixed nor user-set" in text
    assert "template 'toy': defined twice" in text


def test_load_rejects_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("templates: {toy: 1}\nextra: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a list of templates"):
        TemplateRegistry.load(path)
    path.write_text("templates: [1]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"templates\[0\]"):
        TemplateRegistry.load(path)


# -- user schema ------------------------------------------------------------------------------


def test_user_schema_is_generated_from_the_model(registry: TemplateRegistry) -> None:
    schema = registry.get("spim-fusion").user_schema()
    assert "$ref" not in json.dumps(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "ntimepoints",
        "angles",
        "channels",
        "voxel_size",
        "reference_timepoint",
        "detection",
        "fusion",
    }
    detection = schema["properties"]["detection"]
    assert detection["type"] == "object"
    assert detection["additionalProperties"] is False
    assert set(detection["properties"]) == {"sigma", "threshold"}  # only the user paths
    sigma = detection["properties"]["sigma"]
    assert sigma["type"] == "number"
    assert sigma["exclusiveMinimum"] == 0.5
    assert sigma["default"] == 1.8
    assert sigma["description"] == "DoG sigma, voxels"
    assert schema["properties"]["ntimepoints"]["minimum"] == 1
    assert schema["properties"]["fusion"]["properties"]["content_based"]["type"] == "boolean"
    # a whole section as one parameter: its model, inlined
    voxel = schema["properties"]["voxel_size"]
    assert voxel["required"] == ["x", "y", "z"]
    assert voxel["default"] == {"x": 1.0, "y": 1.0, "z": 2.0, "unit": "um"}
    assert "required" not in schema  # every required field has a template default


def test_user_schema_enum_and_required() -> None:
    template = Template(
        name="cyto",
        pipeline="cyto",
        fixed={"input": {"layout": "channel_stacks", "pattern": "ifc/ch{c}.tif"}},
        user_parameters=["segment.method", "channels"],
    )
    schema = template.user_schema()
    method = schema["properties"]["segment"]["properties"]["method"]
    assert method["enum"] == ["otsu", "li", "triangle", "local"]
    spim = Template(
        name="spim",
        pipeline="spim",
        fixed={"input": {"pattern": "t{t}_v{v}.tif"}, "voxel_size": {"x": 1, "y": 1, "z": 1}},
        user_parameters=["ntimepoints", "angles", "detection.sigma"],
    )
    schema = spim.user_schema()
    assert sorted(schema["required"]) == ["angles", "ntimepoints"]
    assert "required" not in schema["properties"]["detection"]


# -- parameters and configs -------------------------------------------------------------------


def test_check_params_refuses_unknown_keys(registry: TemplateRegistry) -> None:
    spim = registry.get("spim-fusion")
    with pytest.raises(ConfigError) as exc:
        spim.check_params({"detection": {"sigma": 2.0, "downsample_xy": 2}, "seed": 3})
    assert problems_of(exc) == {
        "detection.downsample_xy": "not a parameter users may set in this template",
        "seed": "not a parameter users may set in this template",
    }
    with pytest.raises(ConfigError, match=r"registration\.transformation_model"):
        spim.check_params({"registration.transformation_model": "rigid"})  # fixed


def test_check_params_nested_and_dotted_are_the_same(registry: TemplateRegistry) -> None:
    spim = registry.get("spim-fusion")
    voxel = {"x": 1, "y": 1, "z": 3}
    nested = spim.check_params({"detection": {"sigma": 2.5}, "voxel_size": voxel})
    dotted = spim.check_params(
        {"detection.sigma": 2.5, "voxel_size.x": 1, "voxel_size.y": 1, "voxel_size.z": 3}
    )
    assert nested == dotted == {"detection.sigma": 2.5, "voxel_size": voxel}
    with pytest.raises(ConfigError, match=r"voxel_size\.z: required key is missing"):
        spim.check_params({"voxel_size": {"x": 1, "y": 1}})  # a section is given whole
    for twice in (
        {"detection.sigma": 2.5, "detection": {"sigma": 3}},
        {"voxel_size": voxel, "voxel_size.x": 2},
        {"voxel_size.x": 2, "voxel_size": voxel},
    ):
        with pytest.raises(ConfigError, match="given twice"):
            spim.check_params(twice)
    assert voxel == {"x": 1, "y": 1, "z": 3}  # the caller's values are not changed


def test_check_params_field_errors_name_the_path(registry: TemplateRegistry) -> None:
    spim = registry.get("spim-fusion")
    with pytest.raises(ConfigError) as exc:
        spim.check_params(
            {"detection": {"sigma": 0.1, "threshold": "high"}, "voxel_size": {"x": -1}}
        )
    problems = problems_of(exc)
    assert "greater than 0.5" in problems["detection.sigma"]
    assert "valid number" in problems["detection.threshold"]
    assert "greater than 0" in problems["voxel_size.x"]


def test_build_config_merges_and_validates(registry: TemplateRegistry, tmp_path: Path) -> None:
    spim = registry.get("spim-fusion")
    config = spim.build_config({"detection": {"sigma": 2.5}, "ntimepoints": 2}, tmp_path)
    assert config["root"] == str(tmp_path.absolute())
    assert config["detection"]["sigma"] == 2.5  # user
    assert config["detection"]["threshold"] == 0.008  # template default
    assert config["registration"]["transformation_model"] == "affine"  # fixed
    assert config["input"]["pattern"] == "tiff/t{t:03d}_v{v:02d}.tif"
    assert config["ntimepoints"] == 2
    json.dumps(config)
    # what is written is what `scopeflow run` reads back, unchanged
    path = tmp_path / "job" / "config.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    again = load_config(get_pipeline("spim").config_model, path)
    assert again.model_dump(mode="json") == config


def test_build_config_cross_field_errors(registry: TemplateRegistry, tmp_path: Path) -> None:
    spim = registry.get("spim-fusion")
    with pytest.raises(ConfigError) as exc:
        spim.build_config({"ntimepoints": 2, "reference_timepoint": 5}, tmp_path)
    assert problems_of(exc) == {"reference_timepoint": "must be < ntimepoints (2)"}


def test_build_config_resolves_paths_in_the_input_dir(
    registry: TemplateRegistry, tmp_path: Path
) -> None:
    example = registry.get("example-segment")
    with pytest.raises(ConfigError, match="path does not exist") as exc:
        example.build_config({}, tmp_path)  # not uploaded yet
    # the user is told the name of the missing upload, not where the service keeps files
    assert problems_of(exc) == {"input": "path does not exist: images"}
    assert str(tmp_path) not in str(exc.value)
    example.check_params({"truth": "truth.csv"})  # fine before the upload
    (tmp_path / "images").mkdir()
    (tmp_path / "truth.csv").write_text("image_id,centroid_x,centroid_y\n", encoding="utf-8")
    config = example.build_config({"truth": "truth.csv"}, tmp_path)
    assert config["input"] == str(tmp_path / "images")
    assert config["truth"] == str(tmp_path / "truth.csv")


@pytest.mark.parametrize(
    ("template", "params", "key"),
    [
        ("example-segment", {"truth": "../../etc/passwd"}, "truth"),
        ("example-segment", {"truth": "/etc/passwd"}, "truth"),
        ("example-segment", {"truth": "C:\\secret.csv"}, "truth"),
        ("example-segment", {"truth": 3}, "truth"),
        ("spim-fusion", {"channels": ["..", "beads"]}, "channels[0]"),
    ],
)
def test_path_values_stay_inside_the_input(
    registry: TemplateRegistry, tmp_path: Path, template: str, params: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        registry.get(template).build_config(params, tmp_path)
    assert key in problems_of(exc)


def test_every_example_template_builds_with_its_defaults(
    registry: TemplateRegistry, tmp_path: Path
) -> None:
    (tmp_path / "images").mkdir()
    for template in registry:
        config = template.build_config({}, tmp_path)
        model = get_pipeline(template.pipeline).config_model
        model.model_validate(config)  # complete and valid


def test_example_templates_match_the_synthetic_data(registry: TemplateRegistry) -> None:
    from scopeflow.testing._spim_write import spim_config

    synth = spim_config(fmt="tiff", timepoints=3, angles=[0, 90, 180, 270], voxel_size=(1, 1, 2))
    spim = registry.get("spim-fusion")
    assert spim.fixed["input"] == synth["input"]
    assert spim.build_config({}, Path("/data"))["voxel_size"] == synth["voxel_size"]
    cyto = registry.get("cyto-ifc")
    assert cyto.fixed["input"] == {
        "format": "tiff",
        "layout": "channel_stacks",
        "pattern": "ifc/ch{c}.tif",
    }


def test_cyto_template_builds_on_synthetic_upload(
    registry: TemplateRegistry, tmp_path: Path
) -> None:
    from scopeflow.testing import make_cyto_dataset

    make_cyto_dataset(tmp_path, kind="ifc", n=8)
    synth = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config = registry.get("cyto-ifc").build_config({}, tmp_path)
    assert {k: config["input"][k] for k in synth["input"]} == synth["input"]
    assert config["channels"] == synth["channels"]
    assert config["segment"]["channel"] == synth["segment"]["channel"]


# -- argv ---------------------------------------------------------------------------------------


def test_build_argv(registry: TemplateRegistry, tmp_path: Path) -> None:
    argv = build_argv(registry.get("toy"), Path("job/config.yaml"), tmp_path / "run", "py")
    assert argv == [
        "py",
        "-m",
        "scopeflow",
        "run",
        "toy",
        "--config",
        str(Path("job/config.yaml").absolute()),
        "--workdir",
        str(tmp_path / "run"),
        "--cluster",
        "local",
        "--workers",
        "1",
        "--no-progress",
    ]


def test_build_argv_slurm_engine(tmp_path: Path) -> None:
    template = Template(
        **toy(resources={"cores": 4, "memory": "8G", "partition": "debug", "cluster": "slurm"})
    )
    argv = build_argv(template, tmp_path / "c.yaml", tmp_path / "run", "py", account="lab")
    tail = argv[argv.index("--cluster") :]
    assert tail == [
        "--cluster",
        "slurm",
        "--workers",
        "4",
        "--cores",
        "4",
        "--walltime",
        "01:00:00",
        "--memory",
        "8192MB",
        "--queue",
        "debug",
        "--account",
        "lab",
        "--no-progress",
    ]


def test_resources_units() -> None:
    assert Resources(memory="1536M").memory_mb == 1536
    assert Resources(memory="1T").memory_mb == 1024 * 1024
    assert Resources(memory="100K").memory_mb == 1
    assert Resources(walltime="1-02:03:04").walltime_seconds == 93784
    assert Resources(cores=3).engine_workers == 3


def test_shell_injection_is_inert_data(tmp_path: Path) -> None:
    """A hostile parameter ends up as one string in the config file, never in argv or a shell."""
    template = Template(**toy())
    marker = tmp_path / "pwned"
    evil = EVIL.format(marker=marker)
    with pytest.raises(ConfigError):  # refused where the schema says integer
        template.check_params({"units": evil})
    config = template.build_config({"units": 2, "fail_units": [evil]}, tmp_path / "input")
    job = tmp_path / "job"
    job.mkdir()
    config_path = job / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = build_argv(template, config_path, job / "run", sys.executable)
    assert not any(evil in arg or "rm -rf" in arg or "$(" in arg for arg in argv)
    result = subprocess.run(  # a list: no shell is involved
        argv, env=cli_env(), capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists()
    frozen = yaml.safe_load((job / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert frozen["fail_units"] == [evil]  # carried as data, verbatim
    total = json.loads((job / "run" / "outputs" / "total.json").read_text(encoding="utf-8"))
    assert total == {"units": 2, "total": 1}


def test_check_params_needs_mappings(registry: TemplateRegistry) -> None:
    spim = registry.get("spim-fusion")
    with pytest.raises(ConfigError, match="expected a mapping of parameters"):
        spim.check_params([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as exc:
        spim.check_params({"detection": 2.0})
    assert problems_of(exc) == {"detection": "expected a mapping of parameters"}


@pytest.mark.parametrize("key", ["c[1]", "a.b", "x]", "[0]"])
def test_keys_with_brackets_or_dots_are_a_problem_not_a_crash(
    registry: TemplateRegistry, key: str
) -> None:
    """A mapping where a list is expected, with keys that look like the problems' key syntax:
    the value is reported (422 from the API), never a KeyError (500)."""
    with pytest.raises(ConfigError) as exc:
        registry.get("spim-fusion").check_params({"channels": {key: "../x"}})
    problems = problems_of(exc)
    assert any("'..' path component" in m for m in problems.values()), problems
    assert "channels" in problems  # and the type is wrong


def test_template_is_checked_when_made_directly() -> None:
    with pytest.raises(ValueError, match="'unitz' is not a field of the toy configuration"):
        Template(**toy(user_parameters=["unitz"]))


def cyto_by_name() -> Template:
    """A template whose fixed pattern turns a user's channel names into file names."""
    return Template.model_validate(
        {
            "name": "cyto-by-name",
            "pipeline": "cyto",
            "fixed": {
                "input": {"format": "tiff", "layout": "channel_stacks", "pattern": "{channel}.tif"},
                "segment.mode": "ifc",
            },
            "user_parameters": ["channels", "segment.channel"],
        }
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/tmp/other-users-data", "leading '/'"),
        ("../other", "'..' path component"),
        ("a/../../b", "'..' path component"),
        ("a\\..\\b", "backslash"),
        ("bf\nx", "control character"),
        ("bf\x00", "control character"),
    ],
)
def test_user_strings_that_a_pattern_makes_paths_stay_inside_the_input(
    tmp_path: Path, value: str, problem: str
) -> None:
    template = cyto_by_name()
    params = {"channels": ["bf", value], "segment": {"channel": "bf"}}
    with pytest.raises(ConfigError) as exc:
        template.check_params(params)
    assert problem in problems_of(exc)["channels[1]"]
    with pytest.raises(ConfigError):
        template.build_config(params, tmp_path)


def test_ordinary_names_pass_the_value_rules(tmp_path: Path) -> None:
    params = {"channels": ["bf", "sub/dapi", "a..b", "GFP-1_x.y"], "segment": {"channel": "bf"}}
    assert cyto_by_name().check_params(params)["channels"] == params["channels"]


def test_merged_config_is_what_the_job_is_built_from(tmp_path: Path) -> None:
    """A section given as a user parameter replaces its default (no merge into it), in the
    preview's merge and in the built configuration alike."""
    template = Template(
        name="ex",
        pipeline="example",
        fixed={"input": "images"},
        user_parameters=["segment"],
        defaults={"segment": {"sigma": 3.0, "min_area": 99}},
    )
    assert template.merged_config({})["segment"] == {"sigma": 3.0, "min_area": 99}
    merged = template.merged_config({"segment": {"sigma": 2.0}, "nonsense": 1})
    assert merged == {"input": "images", "segment": {"sigma": 2.0}}
    (tmp_path / "images").mkdir()
    built = template.build_config({"segment": {"sigma": 2.0}}, tmp_path)
    assert built["segment"]["sigma"] == 2.0
    assert built["segment"]["min_area"] == 40  # the model's default, not the template's 99


def test_template_cache_makes_readers_wait_for_a_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "templates.yaml"
    path.write_bytes(EXAMPLE.read_bytes())
    loading, release = threading.Event(), threading.Event()
    real_load = TemplateRegistry.load

    def slow_load(p: Path) -> TemplateRegistry:
        loading.set()
        release.wait(30)
        return real_load(p)

    monkeypatch.setattr(TemplateRegistry, "load", staticmethod(slow_load))
    cache = TemplateCache(path)
    got: list[TemplateRegistry | None] = []
    first = threading.Thread(target=lambda: got.append(cache.get()))
    first.start()
    assert loading.wait(30)
    second = threading.Thread(target=lambda: got.append(cache.get()))
    second.start()  # the file is unchanged: before, it got the registry of no load (None)
    release.set()
    first.join(30)
    second.join(30)
    assert len(got) == 2 and all(r is not None and "toy" in r.names() for r in got)
