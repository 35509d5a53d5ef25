"""MLIR-AIE designs as data (:mod:`.model`), built from plans (:mod:`.build`), rendered to text (:mod:`.render`),
parsed back (:mod:`.parse`), checked against the rules mlir-aie's verifiers miss (:mod:`.check`) and run on the host
with the data movement mlir-aie's lowering sets up (:mod:`.simulate`)."""

from aielower.backends.aie.designs.build import AIE_DEVICE, build_design, issue_order
from aielower.backends.aie.designs.check import Violation, check_design, require_valid
from aielower.backends.aie.designs.model import Design
from aielower.backends.aie.designs.parse import parse_design, read_design
from aielower.backends.aie.designs.render import render
from aielower.backends.aie.designs.simulate import DesignRun

__all__ = ["AIE_DEVICE", "Design", "DesignRun", "Violation", "build_design", "check_design", "issue_order",
           "parse_design", "read_design", "render", "require_valid"]
