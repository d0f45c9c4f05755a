"""llamacpp_ref.py: the llama.cpp calls the synthetic-golden scripts share (make_q5_goldens.py,
make_q2q3_goldens.py, make_iq_tq_goldens.py, make_gemma3_goldens.py, make_gemma2_goldens.py,
make_phi3_goldens.py, make_falcon_h1_goldens.py, make_rope_freqs_goldens.py): quantize a GGUF with llama.cpp's own
quantizer, and llama.cpp's logits of every position of one batch, computed with the plain
ggml-cpu kernels (no AMX or repacked weight layouts), one thread, flash attention on.
Needs: pip install llama-cpp-python==0.3.36 numpy."""
import ctypes
import sys

import numpy as np

try:
    import llama_cpp
    import llama_cpp.llama_cpp as llama_c
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")


def quantize(src, dst, ftype):
    """llama_model_quantize(src -> dst) with a llama_ftype value, one thread."""
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src} -> {dst}, ftype {ftype}) failed: {rc}")


def logits(path, tokens, n_ctx, n_ubatch=None):
    """float32 array (len(tokens), n_vocab): llama.cpp's logits with tokens as one batch
    (split into ubatches of n_ubatch tokens when given: llama.cpp's CPU flash attention
    takes a tiled path, which rounds differently, for ubatches of 64 or more tokens)."""
    default_params = llama_c.llama_model_default_params

    def params():  # plain ggml-cpu kernels: no AMX / repacked weight layouts
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params
    try:
        ub = n_ubatch or n_ctx
        llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=ub, n_ubatch=ub,
                              n_threads=1, n_threads_batch=1, logits_all=True,
                              flash_attn=True, verbose=False)
        llm.eval(tokens)
        out = np.array(llm.scores[:len(tokens)], dtype=np.float32)
        llm.close()
        return out
    finally:
        llama_c.llama_model_default_params = default_params
