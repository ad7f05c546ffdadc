"""SAM templates read into FunctionConfig objects (store/sam_template.py with
cfn-flip's YAML tags, core/sam.py's mapping): Globals merged as SAM merges
them, intrinsics resolved where they can be, every unsupported property
named, and a malformed template refused naming the resource and property."""
from __future__ import annotations

import textwrap

import pytest

from runtime_host.core.sam import TemplateError, merge_globals
from runtime_host.store.sam_template import load_template

HEADER = "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"


def project(tmp_path, body: str, folders=("hello",)):
    for folder in folders:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "app.py").write_text("def handler(e, c):\n    return e\n")
    path = tmp_path / "template.yaml"
    path.write_text(HEADER + textwrap.dedent(body))
    return load_template(path, "eu-west-1")


def test_globals_properties_and_intrinsics_become_a_function(tmp_path):
    loaded = project(tmp_path, """
        Parameters:
          Stage: {Type: String, Default: dev}
        Globals:
          Function:
            Runtime: python3.11
            Timeout: 10
            MemorySize: 256
            Environment:
              Variables: {TABLE: shared, STAGE: !Ref Stage}
        Resources:
          HelloFunction:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: hello/
              Handler: app.handler
              MemorySize: 512
              ReservedConcurrentExecutions: 3
              AutoPublishAlias: live
              Environment:
                Variables:
                  TABLE: mine
                  WHERE: !Sub "${AWS::Region}-${Stage}"
              FunctionUrlConfig: {AuthType: NONE}
              Events:
                Tick: {Type: Schedule, Properties: {Schedule: rate(5 minutes)}}
          Other:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: hello/, Handler: app.other, FunctionName: other-fn}
        """)
    hello, other = loaded.functions["HelloFunction"], loaded.functions["other-fn"]
    assert (hello.runtime, hello.handler, hello.timeout_s, hello.memory_mb, hello.reserved_concurrency) == \
        ("python3.11", "app.handler", 10, 512, 3)
    assert hello.environment == {"TABLE": "mine", "STAGE": "dev", "WHERE": "eu-west-1-dev"}
    assert hello.code_dir == (tmp_path / "hello").resolve() and hello.url is not None
    assert [s.expression for s in hello.schedules] == ["rate(5 minutes)"]
    assert (other.memory_mb, other.timeout_s, other.url, other.environment) == (256, 10, None, {"TABLE": "shared", "STAGE": "dev"})
    assert loaded.aliases == {"HelloFunction": "live"} and loaded.warnings == []


def test_globals_merge_as_sam_merges():
    assert merge_globals({"A": 1, "M": {"x": 1, "y": 1}, "L": [1]}, {"A": 2, "M": {"y": 2}, "L": [2]}) == \
        {"A": 2, "M": {"x": 1, "y": 2}, "L": [1, 2]}
    assert merge_globals({"Ref": "P"}, "local") == "local" and merge_globals([1], {"k": 1}) == {"k": 1}


def test_every_property_not_served_is_named_once(tmp_path):
    loaded = project(tmp_path, """
        Globals:
          Function: {Tracing: Active}
          HttpApi: {CorsConfiguration: true}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: hello/
              Runtime: python3.11
              Handler: app.handler
              Policies: [AWSLambdaBasicExecutionRole]
              Layers: [arn:aws:lambda:us-east-1:123456789012:layer:deps:3]
              Environment:
                Variables: {TABLE: !Ref Table, ARN: !GetAtt Table.Arn}
              Events:
                Get: {Type: HttpApi, Properties: {Path: /hi, Method: get}}
                Queue: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}
          Table: {Type: AWS::Serverless::SimpleTable}
        """)
    text = "\n".join(loaded.warnings)
    for words in ("Globals.HttpApi: not served", "Fn.Tracing: not supported", "Fn.Policies: not supported", "Fn.Layers[0]",
                  "Fn.Environment.Variables.TABLE", "Fn.Environment.Variables.ARN", "Fn.Events.Get: HttpApi GET /hi",
                  "Fn.Events.Queue: event type SQS is not served", "Table: resource type AWS::Serverless::SimpleTable"):
        assert words in text, (words, text)
    assert all(line.startswith(str(tmp_path / "template.yaml")) for line in loaded.warnings)
    fn = loaded.functions["Fn"]
    assert fn.environment == {} and fn.url is not None and fn.layers == ()


def test_a_layer_of_the_template_is_served_from_its_folder(tmp_path):
    (tmp_path / "deps" / "python").mkdir(parents=True)
    loaded = project(tmp_path, """
        Resources:
          Deps: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: deps/}}
          Fn:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: hello/, Runtime: python3.11, Handler: app.handler, Layers: [!Ref Deps]}
        """)
    assert loaded.functions["Fn"].layers == ((tmp_path / "deps").resolve(),)


@pytest.mark.parametrize("body, words", [
    ("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: hello/, Runtime: python3.11, "
     "Handler: app.handler, MemorySize: 99999}\n", "Fn: property 'MemorySize' = 99999"),
    ("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: nowhere/, Runtime: python3.11, "
     "Handler: app.handler}\n", "Fn.CodeUri: 'nowhere/': no such folder"),
    ("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: hello/, Runtime: python3.11, "
     "Handler: app.handler, Events: {T: {Type: Schedule, Properties: {Schedule: 'cron(0 12 * * * *)'}}}}\n",
     "Fn: property 'Events (Schedule)[0]'"),
    ("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: hello/, Runtime: python3.11, "
     "Handler: !GetAtt X.Y}\n", "Fn.Handler: Fn::GetAtt cannot be resolved"),
    ("Globals:\n  Function: {Events: {}}\nResources:\n  Fn: {Type: AWS::Serverless::Function}\n",
     "Globals.Function.Events"),
    ("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: hello/, Runtime: python3.11, "
     "Handler: app.handler, Timeout: !Ref Missing}\n", "Fn.Timeout: Ref 'Missing' names no parameter"),
    ("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: [1, 2]\n", "Fn.Properties"),
    ("Resources:\n  Fn:\n   Type: [unclosed\n", "not valid YAML (line"),
    ("Resources: {}\n", "Resources"),
])
def test_a_malformed_template_is_refused_naming_the_resource_and_property(tmp_path, body, words):
    with pytest.raises(TemplateError) as refused:
        project(tmp_path, body)
    assert words in str(refused.value), str(refused.value)
    assert str(tmp_path / "template.yaml") in str(refused.value)


def test_a_template_without_the_sam_transform_is_refused(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Fn: {Type: AWS::Lambda::Function}\n")
    with pytest.raises(TemplateError, match="Transform"):
        load_template(path)
