"""Evaluate the node-condition ValidatingAdmissionPolicy's CEL (matchConditions, variables,
validations, in the API server's order) on admission requests, with cel-python.

Usage: admission_policy.py POLICY.yaml. One line per case, "ok" or "FAIL", with what the policy
decided ("allowed", "denied N" for the first failed validation, "not matched"); exit 1 on any FAIL.
cel-python is not the API server's CEL (no schema typing, no cost limits), so this checks the
logic of the expressions, not their acceptance by a cluster.
"""

import copy
import sys

import celpy
import yaml
from celpy import celtypes

SA = "system:serviceaccount:gpugate:gpugate"
NODE_KEY = "authentication.kubernetes.io/node-name"


def decide(spec, obj, old, username, extra):
    env = celpy.Environment()
    activation = {
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel({"userInfo": {"username": username, "extra": extra}}),
    }

    def evaluate(expression):
        return env.program(env.compile(expression)).evaluate(activation)

    for condition in spec["matchConditions"]:
        if not evaluate(condition["expression"]):
            return "not matched"
    variables = {}
    for variable in spec.get("variables", []):
        activation["variables"] = celtypes.MapType(
            {celtypes.StringType(k): v for k, v in variables.items()}
        )
        variables[variable["name"]] = evaluate(variable["expression"])
    activation["variables"] = celtypes.MapType(
        {celtypes.StringType(k): v for k, v in variables.items()}
    )
    for i, validation in enumerate(spec["validations"]):
        if not evaluate(validation["expression"]):
            return f"denied {i}"
    return "allowed"


def gpu(status):
    return {
        "type": "GPUPerformanceDegraded",
        "status": status,
        "reason": "GPURegression" if status == "True" else "GPUPerformanceOK",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


OLD = {
    "metadata": {"name": "node-1"},
    "status": {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            gpu("False"),
        ],
        "capacity": {"cpu": "64", "nvidia.com/gpu": "8"},
        "allocatable": {"cpu": "63", "nvidia.com/gpu": "8"},
        "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    },
}


def changed(edit, base=OLD):
    node = copy.deepcopy(base)
    edit(node)
    return node


def degrade(node):
    node["status"]["conditions"][1] = gpu("True")


OWN = {NODE_KEY: ["node-1"]}
CASES = [
    ("its own node, its condition", changed(degrade), OLD, SA, OWN, "allowed"),
    (
        "its condition for the first time",
        changed(degrade),
        changed(lambda n: n["status"]["conditions"].pop()),
        SA,
        OWN,
        "allowed",
    ),
    ("another node", changed(degrade), OLD, SA, {NODE_KEY: ["node-2"]}, "denied 0"),
    ("a token that names no node", changed(degrade), OLD, SA, {}, "denied 0"),
    (
        "the kubelet's Ready condition",
        changed(lambda n: n["status"]["conditions"][0].update(status="False")),
        OLD,
        SA,
        OWN,
        "denied 1",
    ),
    (
        "a condition of another type",
        changed(lambda n: n["status"]["conditions"].append({"type": "Other", "status": "True"})),
        OLD,
        SA,
        OWN,
        "denied 1",
    ),
    (
        "capacity",
        changed(lambda n: (degrade(n), n["status"]["capacity"].update(cpu="640"))),
        OLD,
        SA,
        OWN,
        "denied 2",
    ),
    (
        "allocatable",
        changed(lambda n: n["status"]["allocatable"].update({"nvidia.com/gpu": "0"})),
        OLD,
        SA,
        OWN,
        "denied 2",
    ),
    (
        "the kubelet's port",
        changed(lambda n: n["status"]["daemonEndpoints"]["kubeletEndpoint"].update(Port=1)),
        OLD,
        SA,
        OWN,
        "denied 2",
    ),
    ("addresses removed", changed(lambda n: n["status"].pop("addresses")), OLD, SA, OWN, "denied 2"),
    (
        "another user (the kubelet) is not this policy's business",
        changed(lambda n: n["status"]["conditions"][0].update(status="False")),
        OLD,
        "system:node:node-1",
        {},
        "not matched",
    ),
]


def main():
    with open(sys.argv[1]) as f:
        spec = yaml.safe_load(f)["spec"]
    failed = 0
    for name, obj, old, user, extra, want in CASES:
        got = decide(spec, obj, old, user, extra)
        ok = got == want
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'}: {name}: {got}" + ("" if ok else f" (expected {want})"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
