# The Python package (python/hgrid: pip install ./python) over the core libhgrid.so.1.
# Its tests load the release build's library (bin/, built first by make test); those
# needing torch or megatron-core skip (77) where .ci/run's build/venv is absent.
CPU_TESTS += tests/python_api.py tests/python_ids_mix.py tests/torch_groups.py tests/torch_example.py
# examples/torch_mimo.py with NCCL on the GPUs (one GPU: LLM-only tp1); the loss falls.
GPU_TESTS += tests/gpu/torch_mimo.sh
# Start to groups ready, hgrid vs torchrun + HyperCommGrid; gridd's store vs TCPStore.
BENCHES += tests/bench/torch_rendezvous.py tests/bench/store_clients.py
