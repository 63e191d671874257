"""The Lambda runtime's part, in its own interpreter: ``python -I -S -B THIS CODE RUNTIME HANDLER``.

Run by :mod:`tasks.localcloud.sandbox`, never imported. ``-I -S`` leave out site-packages, the
user's and the environment's paths; this script then puts the function's code directory and the
runtime's packages (boto3) on the path, as Lambda does with ``/var/task`` and ``/var/runtime``.
``-B``: Lambda's code directory is read-only, so no byte code is written there either.

The handler's module is imported once (the init phase); each line on stdin is one request and
gets one line of answer. Only the standard library may be imported here.

Requests:
- ``{"invoke": EVENT}`` -> ``{"result": OUTPUT}`` or ``{"errorType": ..., "errorMessage": ...}``
  (what the Lambda runtime reports for an unhandled exception; an import failure of the handler's
  module is ``Runtime.ImportModuleError``, as in Lambda).
- ``{"import": [MODULE, ...]}`` -> ``{"failed": {MODULE: "ExceptionName: message"}}``.
- ``{"find": [NAME, ...]}`` -> ``{"missing": [NAME, ...]}``: top-level names no finder can locate.
- ``{"modules": null}`` -> ``{"modules": {NAME: FILE}}``: every loaded module with its file.
"""

import importlib
import importlib.util
import json
import os
import sys


def _answer(channel, message):
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def _load_handler(spec):
    module_name, _, function_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return None, {
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": f"Unable to import module '{module_name}': {exc}",
        }
    return getattr(module, function_name), None


def _invoke(handler, init_error, event):
    if init_error is not None:
        return init_error
    try:
        return {"result": handler(event, None)}
    except Exception as exc:
        return {"errorType": type(exc).__name__, "errorMessage": str(exc)}


def _import(names):
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    return {"failed": failed}


def _find(names):
    return {"missing": [name for name in names if importlib.util.find_spec(name) is None]}


def _modules():
    return {
        "modules": {
            name: getattr(module, "__file__", None)
            for name, module in list(sys.modules.items())
            if module is not None
        }
    }


def main():
    code_dir, runtime_dir, handler_spec = sys.argv[1:4]
    sys.path[:0] = [code_dir]
    sys.path.append(runtime_dir)
    os.chdir(code_dir)
    # The protocol owns the real stdout; whatever the function prints goes to stderr (its log).
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    handler, init_error = _load_handler(handler_spec)
    for line in sys.stdin:
        request = json.loads(line)
        if "invoke" in request:
            _answer(channel, _invoke(handler, init_error, request["invoke"]))
        elif "import" in request:
            _answer(channel, _import(request["import"]))
        elif "find" in request:
            _answer(channel, _find(request["find"]))
        elif "modules" in request:
            _answer(channel, _modules())
        else:
            _answer(channel, {"errorType": "Runtime.InvalidRequest", "errorMessage": "unknown"})


if __name__ == "__main__":
    main()
