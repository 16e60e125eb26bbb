#!/bin/bash
# A/B between builds: `bash benchmarks/ab_build.sh NAME` builds the working tree's CPU module
# (RelWithDebInfo: optimised as Release, with symbols for perf) into /tmp/build-NAME and a package
# copy /tmp/NAME/fusedrnn. Run a script against it with
#   python benchmarks/run_with.py /tmp/NAME benchmarks/time_call.py lstm 256 16 100 f 3
# and alternate two such copies, a few rounds each, comparing medians (never single runs).
set -e
NAME=${1:?usage: ab_build.sh NAME}
cd "$(dirname "$0")/.."
cmake -S . -B "/tmp/build-$NAME" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFUSEDRNN_CUDA=OFF \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "/tmp/build-$NAME" >/dev/null
rm -rf "/tmp/$NAME" && mkdir -p "/tmp/$NAME"
cp -r python/fusedrnn "/tmp/$NAME/" && rm -f "/tmp/$NAME"/fusedrnn/*.so
cp "/tmp/build-$NAME"/_C*.so "/tmp/$NAME/fusedrnn/"
echo "built /tmp/$NAME"
