"""llamacpp_ref.py: the llama.cpp calls the synthetic-golden scripts share
(make_synthetic_quant_goldens.py, make_gemma3_goldens.py, make_gemma2_goldens.py,
make_phi3_goldens.py, make_falcon_h1_goldens.py, make_rope_freqs_goldens.py): quantize a
GGUF with llama.cpp's own
quantizer, and llama.cpp's logits of every position of one batch, computed with the plain
ggml-cpu kernels (no AMX or repacked weight layouts), one thread, flash attention on.
Also what those scripts write alike: the output folders, a byte-level SentencePiece vocab,
the end of a GGUF file, and a logits golden file.
Needs: pip install llama-cpp-python==0.3.36 numpy."""
import ctypes
import os
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


def plain_llama(path, n_ctx, n_ubatch=None):
    """llama_cpp.Llama for path on the plain ggml-cpu kernels (no AMX or repacked weight
    layouts), one thread, flash attention on, logits of every position kept; batches of
    n_ubatch tokens (default n_ctx)."""
    default_params = llama_c.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params
    try:
        ub = n_ubatch or n_ctx
        return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=ub, n_ubatch=ub,
                               n_threads=1, n_threads_batch=1, logits_all=True,
                               flash_attn=True, verbose=False)
    finally:
        llama_c.llama_model_default_params = default_params


def logits(path, tokens, n_ctx, n_ubatch=None):
    """float32 array (len(tokens), n_vocab): llama.cpp's logits with tokens as one batch
    (split into ubatches of n_ubatch tokens when given: llama.cpp's CPU flash attention
    takes a tiled path, which rounds differently, for ubatches of 64 or more tokens)."""
    llm = plain_llama(path, n_ctx, n_ubatch)
    llm.eval(tokens)
    out = np.array(llm.scores[:len(tokens)], dtype=np.float32)
    llm.close()
    return out


def golden_dirs():
    """(root, models, golden): the repository and its tests/models/synthetic and
    tests/golden/synthetic folders (created); prints the reference's versions."""
    from importlib import metadata
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    models = os.path.join(root, "tests", "models", "synthetic")
    golden = os.path.join(root, "tests", "golden", "synthetic")
    os.makedirs(models, exist_ok=True)
    os.makedirs(golden, exist_ok=True)
    print(f"llama-cpp-python {llama_cpp.__version__}, gguf {metadata.version('gguf')}")
    return root, models, golden


def add_byte_vocab(w, n_vocab, pre=None):
    """A "llama" (SentencePiece) vocab of n_vocab tokens on GGUFWriter w: <unk> <s> </s>, the
    256 byte tokens, then "\u2581w0", "\u2581w1", ... with falling scores; BOS 1 (added),
    EOS 2, UNK 0. pre: a tokenizer.ggml.pre value to write after the model name, if any."""
    normal = [f"\u2581w{i}" for i in range(n_vocab - 259)]
    w.add_tokenizer_model("llama")
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + normal)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(normal))])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(normal))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def finish(w):
    """Write GGUFWriter w's header, metadata and tensors, and close it."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_logits_golden(root, model, tokens, n_ctx, out, note=""):
    """llama.cpp's logits of tokens as one batch (logits()) into out as little-endian
    float32, row-major; prints the model's tensor types and the logits' RMS."""
    import gguf
    types = {}
    for t in gguf.GGUFReader(model).tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    lg = logits(model, tokens, n_ctx)
    assert lg.shape[0] == len(tokens)
    lg.astype("<f4").tofile(out)
    print(f"{os.path.relpath(model, root)}{note}: {os.path.getsize(model)} bytes, tensors {types}; "
          f"logit rms {np.sqrt((lg.astype(np.float64) ** 2).mean()):.3f} -> {os.path.relpath(out, root)}")
    return lg


def last_logits(llm):
    """A copy of the logits of the last position llama.cpp evaluated in Llama llm."""
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),)).copy()


def margin(logits):
    """The gap between the two largest logits (a near-tie when small)."""
    top2 = np.partition(logits, -2)[-2:]
    return float(top2.max() - top2.min())
