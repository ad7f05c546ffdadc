"""Reading a SAM template file (`runtime-host serve --template template.yaml`).

Owns: the file and its YAML, with CloudFormation's short-form tags (`!Ref`,
`!Sub`, `!GetAtt`, `!If` ...) read by cfn-flip's loader (awslabs), which
turns each into its long form (`{"Ref": ...}`, `{"Fn::Sub": ...}`) as
CloudFormation itself reads them; a YAML error is reported with its line.
Why cfn-flip: it is AWS's own small converter between the template formats
(PyYAML and nothing heavy beside it); cfn-lint's decoder reads the same tags
but brings cfn-lint's rule engine (sympy, networkx) with it.
Must not: interpret the template (core/sam.py does).
"""
from __future__ import annotations

from pathlib import Path

import yaml
from cfn_flip import load_yaml

from runtime_host.core.sam import DEFAULT_REGION, SamProject, TemplateError, translate

__all__ = ["TemplateError", "load_template"]


def load_template(path: Path, region: str = DEFAULT_REGION) -> SamProject:
    """The template's functions, warnings and aliases; TemplateError naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read the template: {exc}") from None
    try:
        template = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise TemplateError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return translate(template, path.resolve().parent, str(path), region)
