"""The module's files against each other: widget code vs .ui, parameter node, sample data, requirements, CMake,
extension metadata, and the Slicer API the module may use (5.6 and later)."""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, Set, Tuple

import numpy as np
import SimpleITK as sitk
from conftest import REPO_ROOT
from slicer_scene import MODULE_DIR, add_volume, new_scene

import slicer
from AttentionUNetSegLib.backends.choices import DEVICE_CHOICES
from AttentionUNetSegLogic import AttentionUNetSegLogic
from AttentionUNetSegLogic.dependencies import (OPTIONAL_REQUIREMENTS_FILE, UnmetRequirement, requirements,
                                                unmetRequirements)

if sys.version_info >= (3, 11):
    import tomllib as toml
else:  # the test extras install tomli there
    import tomli as toml


MODULE_FILE = MODULE_DIR / "AttentionUNetSeg.py"
APP_DIR = MODULE_DIR / "AttentionUNetSegApp"
WIDGET_FILE = APP_DIR / "widget.py"
PANEL_FILES = (WIDGET_FILE, APP_DIR / "fine_tuning.py")
"""The files whose `self.ui` is the panel's .ui (the widget and its Fine-tune section)."""
PARAMETER_FILE = APP_DIR / "parameters.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "AttentionUNetSeg.ui"
PARAMETER_CLASS = "AttentionUNetSegParameterNode"

BUTTONS = {"QPushButton", "QToolButton", "ctkPushButton", "ctkCheckablePushButton"}
COMBOS = {"QComboBox", "ctkComboBox"}
NODE_COMBOS = {"qMRMLNodeComboBox"}
TABLES = {"QTableWidget"}
SLIDERS = {"ctkSliderWidget", "QSlider", "QDoubleSpinBox", "QSpinBox"}
ANY_WIDGET = None  # every widget has the property
# What the widget code may do with a .ui widget, by the member it uses: the classes that have that member.
MEMBER_CLASSES = {
    "enabled": ANY_WIDGET, "toolTip": ANY_WIDGET, "visible": ANY_WIDGET,
    "text": BUTTONS | {"QLabel", "QCheckBox", "QLineEdit", "ctkCollapsibleButton"},
    "click": BUTTONS | {"QCheckBox"},
    "value": SLIDERS | {"QProgressBar"},
    "clear": COMBOS | {"QPlainTextEdit", "QLineEdit"},
    "appendPlainText": {"QPlainTextEdit"},
    "addItem": COMBOS, "addItems": COMBOS, "insertItem": COMBOS, "findData": COMBOS, "itemData": COMBOS,
    "setItemData": COMBOS,
    "count": COMBOS, "currentIndex": COMBOS,
    "addAttribute": NODE_COMBOS, "currentNode": NODE_COMBOS, "currentText": COMBOS,
    "setMRMLTableNode": {"qMRMLTableView"},
    "rowCount": TABLES, "insertRow": TABLES, "removeRow": TABLES, "currentRow": TABLES, "setCellWidget": TABLES,
    "cellWidget": TABLES, "horizontalHeader": TABLES,
}
SIGNAL_CLASSES = {"clicked(bool)": BUTTONS | {"QCheckBox"}, "activated(int)": COMBOS, "timeout()": set()}
# Classes the parameterNodeWrapper connects to a parameter of each type (its connectors check the exact class).
PARAMETER_WIDGETS = {"bool": {"QCheckBox", "ctkCheckablePushButton"}, "float": {"ctkSliderWidget", "QDoubleSpinBox"},
                     "choice": COMBOS, "node": NODE_COMBOS}


def ui_widgets() -> Dict[str, Tuple[str, Dict[str, str]]]:
    """Widget name -> (class, {property name: text}) from the .ui file."""
    widgets = {}
    for widget in ElementTree.parse(UI_FILE).iter("widget"):
        properties = {p.get("name"): "".join(p.itertext()).strip() for p in widget.findall("property")}
        widgets[widget.get("name")] = (widget.get("class"), properties)
    return widgets


def widget_code_uses() -> Set[Tuple[str, str, str]]:
    """(widget, member, signal) for every `self.ui.<widget>.<member>` in the panel files (signal for .connect).

    Local aliases (`combo = self.ui.modelComboBox`, then `combo.addItem`) count as uses of the widget.
    """
    uses = set()
    functions = [f for path in PANEL_FILES for f in ast.walk(ast.parse(path.read_text(encoding="utf-8")))]
    for function in functions:
        if not isinstance(function, ast.FunctionDef):
            continue
        aliases = {target.id: statement.value.attr for statement in ast.walk(function)
                   if isinstance(statement, ast.Assign) and _is_ui_widget(statement.value)
                   for target in statement.targets if isinstance(target, ast.Name)}
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute):
                widget = node.value.attr if _is_ui_widget(node.value) else (
                    aliases.get(node.value.id) if isinstance(node.value, ast.Name) else None)
                if widget and node.attr != "connect":
                    uses.add((widget, node.attr, ""))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                    and _is_ui_widget(node.func.value) and node.args and isinstance(node.args[0], ast.Constant):
                uses.add((node.func.value.attr, "connect", node.args[0].value))
    return uses


def _is_ui_widget(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "self")


def parameter_fields() -> Dict[str, str]:
    """Field name -> kind ('bool', 'float', 'str', 'choice', 'node') of the module's parameter node wrapper."""
    tree = ast.parse(PARAMETER_FILE.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == PARAMETER_CLASS)
    fields = {}
    for statement in cls.body:
        if isinstance(statement, ast.AnnAssign):
            annotation = ast.unparse(statement.annotation)
            kind = ("node" if annotation.startswith("vtkMRML") else "choice" if "Choice(" in annotation
                    else next(t for t in ("bool", "float", "str") if t in annotation))
            fields[statement.target.id] = kind
    return fields


def test_every_ui_widget_the_code_uses_exists_with_a_fitting_class() -> None:
    widgets = ui_widgets()
    uses = widget_code_uses()
    assert {name for name, _, _ in uses} >= {"segmentButton", "progressBar", "statusLog", "volumesTableView"}
    for name, member, signal in sorted(uses):
        assert name in widgets, f"self.ui.{name} is used but the .ui has no widget named {name}"
        cls = widgets[name][0]
        allowed = SIGNAL_CLASSES[signal] if member == "connect" else MEMBER_CLASSES[member]
        assert allowed is ANY_WIDGET or cls in allowed, f"self.ui.{name}.{member or signal} does not fit a {cls}"


def test_parameter_widgets_match_the_parameter_node() -> None:
    fields = parameter_fields()
    bound = {props["SlicerParameterName"]: (cls, props) for cls, props in ui_widgets().values()
             if "SlicerParameterName" in props}
    assert set(bound) <= set(fields), f"the .ui binds parameters the node lacks: {set(bound) - set(fields)}"
    for name, (cls, _) in bound.items():
        assert cls in PARAMETER_WIDGETS[fields[name]], f"{name} ({fields[name]}) is bound to a {cls}"
    code = WIDGET_FILE.read_text(encoding="utf-8")
    for name in set(fields) - set(bound):  # parameters the widget code keeps in step itself
        assert re.search(rf"_parameterNode\.{name} = ", code), f"parameter {name} has no widget and is never set"


def test_the_panel_offers_the_engines_devices() -> None:
    """Both device lists are the engine's DEVICE_CHOICES (mps included), not lists of their own: the parameter
    node's choice for a segmentation, and the Fine-tune section's combo box, which the .ui leaves empty."""
    assert "mps" in DEVICE_CHOICES
    tree = ast.parse(PARAMETER_FILE.read_text(encoding="utf-8"))
    device = next(n for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and n.target.id == "device")
    assert "Choice(list(DEVICE_CHOICES))" in ast.unparse(device.annotation)
    combo = next(w for w in ElementTree.parse(UI_FILE).iter("widget") if w.get("name") == "fineTuneDeviceComboBox")
    assert combo.findall("item") == []
    fills = [ast.unparse(n) for n in ast.walk(ast.parse(PANEL_FILES[1].read_text(encoding="utf-8")))
             if isinstance(n, ast.Call) and ast.unparse(n.func) == "self.ui.fineTuneDeviceComboBox.addItems"]
    assert fills == ["self.ui.fineTuneDeviceComboBox.addItems(list(DEVICE_CHOICES))"]
    for panel in (PARAMETER_FILE, PANEL_FILES[1]):
        assert "from AttentionUNetSegLib.backends.choices import DEVICE_CHOICES" in panel.read_text(encoding="utf-8")


def test_parameter_node_round_trips_through_an_mrb(tmp_path: Path, small_ct: sitk.Image) -> None:
    """The values the parameter node wrapper stores (its serialization: str(float), "True"/"False",
    node references) come back from a saved scene, in the one parameter node the logic finds."""
    scene = new_scene(tmp_path / "cache")
    logic = AttentionUNetSegLogic()
    node = logic.getParameterNode()
    assert logic.getParameterNode() is node
    assert node.GetAttribute("ModuleName") == "AttentionUNetSeg"
    volume = add_volume(scene, small_ct, "CT")
    volume.AddDefaultStorageNode()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "organs")
    segmentation.AddDefaultStorageNode()
    colors = scene.GetFirstNodeByName("Iron")
    references = {"inputVolume": volume, "attentionVolume": volume, "outputSegmentation": segmentation,
                  "attentionColorMap": colors}
    values = {"bool": "False", "float": "0.35", "str": "my-model", "choice": "cpu"}
    fields = parameter_fields()
    for name, kind in fields.items():
        if kind == "node":
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, references[name].GetID())
        else:
            node.SetParameter(name, values[kind])
    assert scene.WriteToMRB(str(tmp_path / "parameters.mrb"))

    reloaded = new_scene(tmp_path / "cache2")
    assert reloaded.ReadFromMRB(str(tmp_path / "parameters.mrb"))
    loaded = logic.getParameterNode()
    assert loaded.GetScene() is reloaded
    assert reloaded.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1
    for name, kind in fields.items():
        if kind == "node":
            assert loaded.GetNodeReference(name).GetName() == references[name].GetName()
        else:
            assert loaded.GetParameter(name) == values[kind]
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded.GetNodeReference("inputVolume")),
                                  sitk.GetArrayViewFromImage(small_ct))


def test_sample_data_checksum_matches_the_bundled_ct() -> None:
    tree = ast.parse((APP_DIR / "sampledata.py").read_text(encoding="utf-8"))
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    sample = MODULE_DIR / "AttentionUNetSegLib" / "data" / "sample" / "example_ct.nii.gz"
    assert constants["SAMPLE_SHA256"] == hashlib.sha256(sample.read_bytes()).hexdigest()


def test_requirements_agree_with_the_package_and_are_met_here() -> None:
    """Inside Slicer the engine's dependencies are required but for OpenVINO, optional there as the int8 extra's
    NNCF is (each installed on its own, a failure not fatal)."""
    project = toml.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["int8"]
    listed, optional = requirements(), requirements(OPTIONAL_REQUIREMENTS_FILE)
    assert {"torch", "monai", "SimpleITK", "safetensors", "numpy"} <= {re.split(r"[<>=!~ ]", r)[0] for r in listed}
    assert [re.split(r"[<>=!~ ]", r)[0] for r in optional] == ["openvino", "nncf"]
    assert sorted(listed + optional) == sorted(declared), "the two files must list pyproject.toml's dependencies"
    assert unmetRequirements() == []
    assert unmetRequirements(OPTIONAL_REQUIREMENTS_FILE) == []


def fake_distribution(folder: Path, name: str, version: str) -> None:
    """An installed-package record (a .dist-info folder) as pip writes it, with no code."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")


def test_too_old_and_missing_packages_are_named(tmp_path: Path, monkeypatch) -> None:
    """Versions are compared with the specifiers: an old package counts as unmet and says which version it is."""
    site = tmp_path / "site"
    fake_distribution(site, "attention_unet_seg_probe", "1.2.0")
    fake_distribution(site, "Attention.Unet-Seg_Other", "3.0")
    monkeypatch.syspath_prepend(str(site))
    file = tmp_path / "requirements.txt"
    file.write_text("# comment\nnumpy>=1.24\nattention-unet-seg-probe>=1.10  # 1.2 is older than 1.10\n"
                    "attention_unet_seg_other>=2,<4\nattention_unet_seg_absent>=1.0\nSimpleITK>=999\n")
    unmet = unmetRequirements(file)
    assert unmet == [UnmetRequirement("attention-unet-seg-probe>=1.10", "1.2.0"),
                     UnmetRequirement("attention_unet_seg_absent>=1.0", None),
                     UnmetRequirement("SimpleITK>=999", importlib.metadata.version("SimpleITK"))]
    assert str(unmet[0]) == "attention-unet-seg-probe>=1.10 (attention-unet-seg-probe 1.2.0 is too old)"
    assert str(unmet[1]) == "attention_unet_seg_absent>=1.0 (not installed)"


def test_cmake_installs_every_module_file() -> None:
    """Listed resources exist; the globs cover every .py of the module's packages and the engine's data."""
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "AttentionUNetSeg")
    resources = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", cmake, re.S).group(1).split()
    for path in (r for r in resources if not re.fullmatch(r"\$\{\w+\}", r)):
        assert (MODULE_DIR / path).is_file(), path
    covered = set()
    for block in re.findall(r"file\(GLOB_RECURSE \w+ RELATIVE \S+ CONFIGURE_DEPENDS(.*?)\)", cmake, re.S):
        for pattern in block.split():
            folder, name = pattern.rsplit("/", 1)
            covered |= {p for p in (MODULE_DIR / folder).rglob(name) if p.is_file()}
    wanted = {p for package in ("AttentionUNetSegApp", "AttentionUNetSegLogic", "AttentionUNetSegLib")
              for p in (MODULE_DIR / package).rglob("*.py")}
    wanted |= {p for p in (MODULE_DIR / "AttentionUNetSegLib" / "data").rglob("*") if p.is_file()}
    assert MODULE_DIR / "AttentionUNetSegLib" / "data" / "models.json" in covered
    assert wanted - covered == set()


PANEL_OPEN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import AttentionUNetSegLogic
logic = AttentionUNetSegLogic.AttentionUNetSegLogic()
logic.unmetDependencies()
entries = logic.models()
metadata = {entry.name: logic.modelMetadata(entry.name).license for entry in entries if entry.bundled}
default = logic.modelMetadata(None).name
print(json.dumps({"loaded": sorted(set(sys.argv[2:]) & set(sys.modules)), "models": metadata, "default": default}))
"""


def test_the_panels_first_open_loads_neither_qt_nor_torch_nor_simpleitk() -> None:
    """What the panel does before a click, in a fresh interpreter: import the logic, build it, check the packages,
    list the models and read their metadata (of the bundled ones: models other tests registered state no
    licence). Slicer's process must not load PyTorch or SimpleITK for that (the
    worker holds them), nor Qt for the logic. `import slicer` itself (slicer-core) loads neither."""
    heavy = ["qt", "ctk", "torch", "monai", "SimpleITK", "openvino", "safetensors"]
    output = subprocess.run([sys.executable, "-c", PANEL_OPEN, str(MODULE_DIR), *heavy], capture_output=True,
                            text=True, check=True)
    opened = json.loads(output.stdout.strip().splitlines()[-1])
    assert opened["loaded"] == []
    assert opened["default"] in opened["models"]
    assert all(opened["models"].values()), f"every bundled model states its licence: {opened['models']}"


def test_module_folder_holds_one_module_file_that_wires_the_classes_slicer_looks_up() -> None:
    """Slicer takes every .py beside the module file for a module, and finds <Module>Widget and <Module>Test in
    the module file's namespace (the widget factory, ScriptedLoadableModule.runTest, ctest's runUnitTest)."""
    assert [p.name for p in MODULE_DIR.glob("*.py")] == ["AttentionUNetSeg.py"]
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    tree = ast.parse(text)
    imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"AttentionUNetSegWidget", "AttentionUNetSegTest", "AttentionUNetSegLogic"} <= imported
    assert defined == {"AttentionUNetSeg"}
    test_names = [node.name for node in ast.walk(ast.parse((APP_DIR / "selftest.py").read_text(encoding="utf-8")))
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]
    assert test_names == ["test_PanelSmoke", "test_SegmentSampleCTOnCPU"], (
        "ctest runs every test_ method: a smoke test that always runs, and one segmentation")


def test_the_self_test_checks_the_panel_always_and_installs_only_when_asked() -> None:
    """slicer.testing.runUnitTest counts a skipped test as passed: the smoke test, which needs no engine, must assert
    for real; the segmentation test may skip, but installs nothing unless ATTENTIONUNETSEG_TEST_INSTALL=1."""
    source = (APP_DIR / "selftest.py").read_text(encoding="utf-8")
    functions = {f.name: f for f in ast.walk(ast.parse(source)) if isinstance(f, ast.FunctionDef)}
    asserts = [n for n in ast.walk(functions["test_PanelSmoke"])
               if isinstance(n, ast.Call) and ast.unparse(n.func).startswith("self.assert")]
    assert len(asserts) >= 8
    assert "requireEngine" not in ast.unparse(functions["test_PanelSmoke"])
    installing = [name for name, f in functions.items() if "installDependencies" in ast.unparse(f)]
    assert installing == ["requireEngine"]
    guard = ast.unparse(functions["requireEngine"])
    assert guard.index("os.environ.get(INSTALL_VARIABLE) != '1'") < guard.index("installDependencies")
    assert 'INSTALL_VARIABLE = "ATTENTIONUNETSEG_TEST_INSTALL"' in source


NEWER_THAN_SLICER_5_6 = {"SetTerminology": "5.10", "GetTerminology": "5.10"}
"""Slicer/MRML methods the module must not call: they do not exist in Slicer 5.6 (since which release they do)."""


def test_module_calls_no_api_newer_than_slicer_5_6() -> None:
    for path in [MODULE_FILE, *APP_DIR.glob("*.py"), *(MODULE_DIR / "AttentionUNetSegLogic").glob("*.py")]:
        calls = {node.func.attr for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
        newer = calls & set(NEWER_THAN_SLICER_5_6)
        assert not newer, f"{path.name} calls {newer}, which Slicer 5.6 lacks"


def test_catalogue_metadata_names_no_missing_repository_and_states_the_limits() -> None:
    """The project has no public repository yet: no homepage, icon or screenshot URL may point at one (Slicer treats
    them as optional). The description states the default model's licence (its file's) and that macOS is not
    supported, as the panel does."""
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.findall(r"set\(EXTENSION_(HOMEPAGE|ICONURL|SCREENSHOTURLS)\b", cmake) == []
    assert "https://" not in cmake
    description = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]+)"\)', cmake).group(1)
    license = AttentionUNetSegLogic.modelMetadata(None).license
    assert license.split()[0] in description
    assert "non-commercial" in description
    assert "macOS" in description
    for folder in (REPO_ROOT / "Resources", MODULE_DIR / "Resources" / "Icons"):
        assert sitk.ReadImage(str(folder / "AttentionUNetSeg.png")).GetSize() == (128, 128)
