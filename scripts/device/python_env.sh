# Sourced by the GPU scripts, from the repository root: diffusers from the wheels in .pywhl/ when the
# image lacks it (installed into /tmp/site), the library from .device-bin/ and the package from python/.
if ls .pywhl/*.whl >/dev/null 2>&1 && ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .pywhl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export DYNAMICRAD_LIBRARY=$PWD/.device-bin/libdynamicrad_c.so
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
