"""A SAM template's functions, as the host's FunctionConfig objects.

Owns: the mapping of `AWS::Serverless::Function` (after Globals are merged,
as SAM merges them) to function.toml's fields, then checked by core/config.py
as any function is; the intrinsic functions it can resolve on one machine
(`Ref` to a parameter's Default or a pseudo parameter, `Ref` to a
`AWS::Serverless::LayerVersion` of the template, `Fn::Sub` over those); and a
warning line for every property, event and value it does not serve
(docs/spec-additions.md §10). A malformed template raises TemplateError
naming the resource and the property.
Must not: read the YAML (store/sam_template.py does, with cfn-flip) or start
anything. It is pure over the parsed template, so it is unit-tested on dicts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime_host.core.config import ConfigError, FunctionConfig, function_from_raw
from runtime_host.core.protocol import ACCOUNT_ID

FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
DEFAULT_REGION = "us-east-1"

# Properties of AWS::Serverless::Function served here (their meaning: spec-additions §10).
SERVED = ("Runtime", "Handler", "CodeUri", "MemorySize", "Timeout", "Environment", "Layers",
          "ReservedConcurrentExecutions", "ProvisionedConcurrencyConfig", "AutoPublishAlias", "FunctionUrlConfig",
          "Events", "FunctionName", "Description", "Architectures", "EphemeralStorage", "LoggingConfig",
          "PackageType")
# Properties Globals may set for Function (SAM's list; others in Globals.Function are refused, as SAM does).
GLOBALS_FUNCTION_PROPERTIES = frozenset({
    "Handler", "Runtime", "CodeUri", "DeadLetterQueue", "Description", "MemorySize", "Timeout", "VpcConfig",
    "Environment", "Tags", "PropagateTags", "Tracing", "KmsKeyArn", "Layers", "AutoPublishAlias",
    "DeploymentPreference", "PermissionsBoundary", "ReservedConcurrentExecutions", "ProvisionedConcurrencyConfig",
    "AssumeRolePolicyDocument", "EventInvokeConfig", "Architectures", "EphemeralStorage", "SnapStart",
    "FunctionUrlConfig", "RuntimeManagementConfig", "LoggingConfig", "RecursiveLoop", "SourceKMSKeyArn",
    "CodeSigningConfigArn", "AutoPublishAliasAllProperties", "AutoPublishCodeSha256", "VersionDescription",
    "Policies", "Role", "FileSystemConfigs", "KmsKeyArn", "Capacity", "CapacityProviderConfig",
})
# Resource types whose presence changes nothing for the functions served (no warning for these).
QUIET_TYPES = frozenset({LAYER_TYPE, "AWS::Serverless::HttpApi"})
PSEUDO = {"AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
          "AWS::NoValue": None}


class TemplateError(ValueError):
    """The template cannot be served; the message names the resource and the property."""


@dataclass
class SamProject:
    functions: dict[str, FunctionConfig] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)          # one line per property not served
    aliases: dict[str, str] = field(default_factory=dict)       # function -> AutoPublishAlias


def merge_globals(global_value, local_value):
    """SAM's Globals merge: maps merged key by key (the resource's value wins),
    lists concatenated (Globals' first), anything else (an intrinsic function
    too) taken from the resource; a type mismatch takes the resource's."""
    def kind(value):
        if isinstance(value, dict):
            return "primitive" if _is_intrinsic(value) else "dict"
        return "list" if isinstance(value, list) else "primitive"
    if kind(global_value) != kind(local_value) or kind(local_value) == "primitive":
        return local_value
    if kind(local_value) == "list":
        return global_value + local_value
    merged = dict(global_value)
    for key, value in local_value.items():
        merged[key] = merge_globals(merged[key], value) if key in merged else value
    return merged


def _is_intrinsic(value: dict) -> bool:
    return len(value) == 1 and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))


class _Translator:
    def __init__(self, template: dict, folder: Path, label: str, region: str):
        self.template, self.folder, self.label, self.region = template, folder, label, region
        self.project = SamProject()
        parameters = template.get("Parameters") or {}
        if not isinstance(parameters, dict):
            raise TemplateError(f"{label}: Parameters: expected a map of parameter names")
        self.parameters = {name: (spec or {}).get("Default") if isinstance(spec, dict) else None
                           for name, spec in parameters.items()}
        resources = template.get("Resources")
        if not isinstance(resources, dict) or not resources:
            raise TemplateError(f"{label}: Resources: expected a map of resources (a template has at least one)")
        self.resources = resources
        globals_section = template.get("Globals") or {}
        if not isinstance(globals_section, dict):
            raise TemplateError(f"{label}: Globals: expected a map such as Globals: {{Function: {{Timeout: 10}}}}")
        self.globals = globals_section.get("Function") or {}
        if not isinstance(self.globals, dict):
            raise TemplateError(f"{label}: Globals.Function: expected a map of properties")
        for section in globals_section:
            if section != "Function":
                self.warn(f"Globals.{section}", "not served (only Globals.Function is); ignored")
        for key in self.globals:
            if key not in GLOBALS_FUNCTION_PROPERTIES:
                raise TemplateError(f"{label}: Globals.Function.{key}: not a property Globals may set for "
                                    "AWS::Serverless::Function (SAM refuses it too)")

    def warn(self, where: str, text: str) -> None:
        self.project.warnings.append(f"{self.label}: {where}: {text}")

    # --- intrinsic functions --------------------------------------------------------
    def resolve(self, value, where: str):
        """A value with the intrinsics this host can resolve resolved; TemplateError for the others."""
        if isinstance(value, dict) and _is_intrinsic(value):
            (name, argument), = value.items()
            if name == "Ref":
                return self._ref(argument, where)
            if name == "Fn::Sub":
                return self._sub(argument, where)
            raise TemplateError(f"{self.label}: {where}: {name} cannot be resolved on this host (no stack "
                                "to read it from); write the value itself")
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def _ref(self, name, where: str):
        if name == "AWS::Region":
            return self.region
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::StackName":
            return self.folder.name
        if name in self.parameters:
            if self.parameters[name] is None:
                raise TemplateError(f"{self.label}: {where}: parameter {name} has no Default; give it one")
            return self.parameters[name]
        if name in self.resources:
            return {"__resource__": name}
        raise TemplateError(f"{self.label}: {where}: Ref {name!r} names no parameter or resource of the template")

    def _sub(self, argument, where: str) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2:
            text, variables = argument
        else:
            text, variables = None, None
        if not isinstance(text, str) or not isinstance(variables, dict):
            raise TemplateError(f"{self.label}: {where}: Fn::Sub takes a string or [string, {{variables}}]")

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            value = self.resolve(variables[name], where) if name in variables else self._ref(name, where)
            if isinstance(value, dict):
                raise TemplateError(f"{self.label}: {where}: Fn::Sub of ${{{name}}}, a resource, cannot be "
                                    "resolved on this host")
            return str(value)
        return re.sub(r"\$\{([^}]+)\}", one, text)

    # --- functions ----------------------------------------------------------------------
    def translate(self) -> SamProject:
        for logical_id, resource in self.resources.items():
            if not isinstance(resource, dict) or "Type" not in resource:
                raise TemplateError(f"{self.label}: {logical_id}: expected a resource with a Type")
            kind = resource["Type"]
            if kind == FUNCTION_TYPE:
                self._function(logical_id, resource)
            elif kind not in QUIET_TYPES:
                self.warn(logical_id, f"resource type {kind} is not served (only {FUNCTION_TYPE}); ignored")
        if not self.project.functions:
            raise TemplateError(f"{self.label}: Resources: no {FUNCTION_TYPE} to serve")
        return self.project

    def _function(self, logical_id: str, resource: dict) -> None:
        local = resource.get("Properties") or {}
        if not isinstance(local, dict):
            raise TemplateError(f"{self.label}: {logical_id}.Properties: expected a map of properties")
        props = merge_globals(self.globals, local)
        def where(prop: str) -> str:
            return f"{logical_id}.{prop}"

        def value(prop: str, default=None):
            return self.resolve(props.get(prop, default), where(prop))

        for prop in props:
            if prop not in SERVED:
                self.warn(where(prop), "not supported by this host; ignored")
        name = value("FunctionName") or logical_id
        if props.get("PackageType", "Zip") != "Zip":
            raise TemplateError(f"{self.label}: {where('PackageType')}: only Zip functions are served from a "
                                "template; serve an image with runtime = \"image\" in a function folder")
        raw: dict = {"name": name, "runtime": value("Runtime"), "handler": value("Handler", "")}
        for prop, key in (("MemorySize", "memory_mb"), ("Timeout", "timeout_s"),
                          ("ReservedConcurrentExecutions", "reserved_concurrency"), ("Description", "description")):
            if prop in props:
                raw[key] = _number(value(prop)) if key != "description" else str(value(prop))
        raw["environment"] = self._variables(logical_id, props.get("Environment") or {})
        storage = (value("EphemeralStorage", {}) or {}).get("Size")
        if storage is not None:
            raw["ephemeral_storage_mb"] = _number(storage)
        architectures = value("Architectures", []) or []
        if architectures:
            raw["architecture"] = architectures[0]
        logging = value("LoggingConfig", {}) or {}
        if logging:
            raw["logging"] = {key: logging[prop] for prop, key in (("LogFormat", "format"),
                                                                    ("ApplicationLogLevel", "application_level"),
                                                                    ("SystemLogLevel", "system_level"))
                              if prop in logging}
            for prop in set(logging) - {"LogFormat", "ApplicationLogLevel", "SystemLogLevel"}:
                self.warn(where(f"LoggingConfig.{prop}"), "not supported by this host; ignored")
        provisioned = value("ProvisionedConcurrencyConfig", {}) or {}
        if provisioned:
            count = _number(provisioned.get("ProvisionedConcurrentExecutions", 0))
            raw["provisioned_concurrency"] = count
            if "ReservedConcurrentExecutions" not in props and count > 10:
                raw["reserved_concurrency"] = count          # our default reserve (10) must hold them
        raw["layers"] = self._layers(logical_id, props)
        url = self._url(logical_id, props)
        if url is not None:
            raw["url"] = url
        schedules, http = self._events(logical_id, props)
        if schedules:
            raw["schedule"] = schedules
        if http and "url" not in raw:
            raw["url"] = True          # an HttpApi event: the function gets an HTTP endpoint (payload 2.0)
        code = self._code_folder(logical_id, props)
        try:
            fn = function_from_raw(raw, code, f"{self.label}: {logical_id}")
        except ConfigError as exc:
            raise TemplateError(_sam_words(str(exc))) from None
        if fn.name in self.project.functions:
            raise TemplateError(f"{self.label}: {where('FunctionName')}: {fn.name} is already the name of another "
                                "function of the template")
        self.project.functions[fn.name] = fn
        alias = value("AutoPublishAlias")
        if alias:
            if not isinstance(alias, str) or not re.fullmatch(r"(?!^[0-9]+$)[a-zA-Z0-9-_]{1,128}", alias):
                raise TemplateError(f"{self.label}: {where('AutoPublishAlias')}: {alias!r} is not an alias name "
                                    "(1-128 letters, digits, '-' and '_', not all digits)")
            self.project.aliases[fn.name] = alias

    def _variables(self, logical_id: str, environment) -> dict:
        """Environment.Variables, each resolved on its own: one that names a resource of the stack
        (a table's name, an ARN) has no value here, so it is left unset with a warning, not fatal."""
        if not isinstance(environment, dict) or not isinstance(environment.get("Variables") or {}, dict):
            raise TemplateError(f"{self.label}: {logical_id}.Environment: expected Variables: {{NAME: value}}")
        variables = {}
        for key, raw_value in (environment.get("Variables") or {}).items():
            where = f"{logical_id}.Environment.Variables.{key}"
            try:
                value = self.resolve(raw_value, where)
            except TemplateError as exc:
                self.warn(where, f"an intrinsic function this host cannot resolve (there is no stack: {exc}); "
                                 "the variable is not set")
                continue
            if isinstance(value, dict):
                self.warn(where, f"names resource {value.get('__resource__', value)}, which has no value on this "
                                 "host; the variable is not set")
                continue
            if value is not None:
                variables[key] = json.dumps(value) if isinstance(value, bool) else value
        return variables

    def _code_folder(self, logical_id: str, props: dict) -> Path:
        if "InlineCode" in props:
            raise TemplateError(f"{self.label}: {logical_id}.InlineCode: not served; put the code in a folder "
                                "and name it with CodeUri")
        code_uri = self.resolve(props.get("CodeUri", "."), f"{logical_id}.CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            raise TemplateError(f"{self.label}: {logical_id}.CodeUri: {code_uri!r} is not a local folder; this host "
                                "serves code from a folder next to the template (CodeUri: hello_world/)")
        folder = (self.folder / code_uri).resolve()
        if not folder.is_dir():
            raise TemplateError(f"{self.label}: {logical_id}.CodeUri: {code_uri!r}: no such folder ({folder}); "
                                "CodeUri is relative to the template's folder")
        return folder

    def _layers(self, logical_id: str, props: dict) -> list[str]:
        layers = []
        for index, entry in enumerate(props.get("Layers") or []):
            where = f"{logical_id}.Layers[{index}]"
            ref = entry.get("Ref") if isinstance(entry, dict) else None
            target = self.resources.get(ref) if isinstance(ref, str) else None
            if isinstance(target, dict) and target.get("Type") == LAYER_TYPE:
                content = (target.get("Properties") or {}).get("ContentUri")
                if not isinstance(content, str) or content.startswith("s3://"):
                    raise TemplateError(f"{self.label}: {ref}.ContentUri: {content!r} is not a local folder or .zip")
                layers.append(str((self.folder / content).resolve()))
            else:
                self.warn(where, f"{entry!r} is not a layer of this template (an ARN has nothing to resolve to "
                                 "here); not served")
        return layers

    def _url(self, logical_id: str, props: dict):
        config = self.resolve(props.get("FunctionUrlConfig"), f"{logical_id}.FunctionUrlConfig")
        if config is None:
            return None
        if not isinstance(config, dict):
            raise TemplateError(f"{self.label}: {logical_id}.FunctionUrlConfig: expected a map with AuthType")
        if config.get("AuthType") == "AWS_IAM":
            self.warn(f"{logical_id}.FunctionUrlConfig.AuthType", "AWS_IAM: this host checks no signatures, so "
                      "the URL is not served (set AuthType: NONE to serve it; invoke through the API meanwhile)")
            return None
        for prop in set(config) - {"AuthType", "InvokeMode"}:
            self.warn(f"{logical_id}.FunctionUrlConfig.{prop}", "not supported by this host; ignored")
        return {"auth_type": config.get("AuthType", "NONE"), "invoke_mode": config.get("InvokeMode", "BUFFERED")}

    def _events(self, logical_id: str, props: dict) -> tuple[list[str], bool]:
        events = props.get("Events") or {}
        if not isinstance(events, dict):
            raise TemplateError(f"{self.label}: {logical_id}.Events: expected a map of event names to events")
        schedules, http = [], False
        for event_name, event in events.items():
            where = f"{logical_id}.Events.{event_name}"
            if not isinstance(event, dict) or "Type" not in event:
                raise TemplateError(f"{self.label}: {where}: expected an event with a Type")
            if event["Type"] not in ("Schedule", "HttpApi"):
                self.warn(where, f"event type {event['Type']} is not served (only Schedule and HttpApi); ignored")
                continue
            properties = self.resolve(event.get("Properties") or {}, f"{where}.Properties")
            if not isinstance(properties, dict):
                raise TemplateError(f"{self.label}: {where}.Properties: expected a map of properties")
            if event["Type"] == "Schedule":
                expression = properties.get("Schedule")
                if expression is None:
                    raise TemplateError(f"{self.label}: {where}.Properties.Schedule: missing; e.g. rate(5 minutes)")
                if properties.get("Enabled", True) is False or properties.get("State") == "DISABLED":
                    self.warn(where, "disabled in the template; not scheduled")
                    continue
                schedules.append(expression)
                for prop in set(properties) - {"Schedule", "Enabled", "State", "Name", "Description"}:
                    self.warn(f"{where}.Properties.{prop}", "not supported by this host; ignored (the function "
                              "gets EventBridge's Scheduled Event)")
            elif event["Type"] == "HttpApi":
                http = True
                self.warn(where, f"HttpApi {str(properties.get('Method', 'ANY')).upper()} {properties.get('Path', '/')}: served at "
                          "the function's URL, where every method and path reaches the function (no route matching)")
                if str(properties.get("PayloadFormatVersion", "2.0")) != "2.0":
                    self.warn(f"{where}.Properties.PayloadFormatVersion", "only 2.0 is served; the function gets "
                              "payload format 2.0")
                for prop in set(properties) - {"Path", "Method", "PayloadFormatVersion", "ApiId", "TimeoutInMillis"}:
                    self.warn(f"{where}.Properties.{prop}", "not supported by this host; ignored")
        return schedules, http


def _number(value):
    """A number as a template may write it ("256" is taken, as CloudFormation takes it)."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return value


# function.toml's field names in config.py's errors, as the template names them.
SAM_NAMES = {"memory_mb": "MemorySize", "timeout_s": "Timeout", "runtime": "Runtime", "handler": "Handler",
             "reserved_concurrency": "ReservedConcurrentExecutions", "layers": "Layers",
             "provisioned_concurrency": "ProvisionedConcurrencyConfig.ProvisionedConcurrentExecutions",
             "ephemeral_storage_mb": "EphemeralStorage.Size", "architecture": "Architectures",
             "environment": "Environment.Variables", "schedule": "Events (Schedule)", "url": "FunctionUrlConfig",
             "logging": "LoggingConfig", "name": "FunctionName", "description": "Description"}


def _sam_words(message: str) -> str:
    for key, prop in SAM_NAMES.items():
        message = re.sub(rf"field '{key}(\.|\[|')", lambda m: f"property '{prop}{m.group(1)}", message)
    return message


def translate(template: object, folder: Path, label: str, region: str = DEFAULT_REGION) -> SamProject:
    """The functions of a parsed SAM template whose folder is `folder` (CodeUri is relative to it)."""
    if not isinstance(template, dict):
        raise TemplateError(f"{label}: not a template (expected a map with Resources)")
    transform = template.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    if not any(isinstance(t, str) and t.startswith("AWS::Serverless") for t in transforms):
        raise TemplateError(f"{label}: Transform: a SAM template says Transform: AWS::Serverless-2016-10-31")
    return _Translator(template, folder, label, region).translate()
