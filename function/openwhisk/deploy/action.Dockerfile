# The action's runtime image on a real OpenWhisk (a blackbox action, deploy/manifest.yaml): the python 3.11 runtime
# (its Go action-loop proxy, launcher.py and compiler) plus the serving requirements, the inference core and the
# model. NOT BUILT by this kit (no registry is reachable here). apache/openwhisk@1fae641's runtimes.json names the
# runtime only as `nightly`: replace it with the digest you pull (openwhisk/action-python-v3.11@sha256:...).
#
#   docker build -f function/openwhisk/deploy/action.Dockerfile -t kubeless-dl-eval/openwhisk-action:1.0.0 .
ARG RUNTIME_IMAGE=openwhisk/action-python-v3.11:nightly
FROM ${RUNTIME_IMAGE}
COPY requirements/serving.txt /tmp/serving.txt
RUN pip3 install --no-cache-dir -r /tmp/serving.txt
# The action process sees only the __OW_ variables and /init's env, so nothing here is an ENV: the inference core is
# importable through a .pth file, and the model is where predictor_from_env looks by default (/model).
COPY model/__init__.py model/inference.py /opt/kubeless-dl-eval/model/
RUN echo /opt/kubeless-dl-eval > "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/kubeless-dl-eval.pth"
COPY build/model/labels.json build/model/model.keras build/model/model.tflite /model/
