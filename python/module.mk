# The Python package (python/hgrid: pip install ./python) over the core libhgrid.so.1.
# Its tests load the release build's library (bin/, built first by make test); those
# needing torch or megatron-core skip (77) where .ci/run's build/venv is absent.
CPU_TESTS += tests/python_api.py tests/torch_groups.py tests/torch_example.py
# Start to groups ready, hgrid vs torchrun + HyperCommGrid; gridd's store vs TCPStore.
BENCHES += tests/bench/torch_rendezvous.py tests/bench/store_clients.py
