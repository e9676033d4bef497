"""Reference figures for the shipped fp16 weights (model-f16.bin), computed in PyTorch with every weight upcast to fp32.

  /usr/bin/python3 reference_f16.py MODEL_DIR [DATA_DIR]
Reads MODEL_DIR/model-f16.bin (llama2.c v0 layout, little-endian fp16 weights) and DATA_DIR/pycode-dev.tokens.jsonl
(default: examples/data). Writes MODEL_DIR/reference-logits.bin (format of export_code_llama.py: int32 n_tokens=512,
n_rows=8, vocab; the 512 ids, the first 512 of the first dev file; fp32 logits of the last 8 positions), and updates
MODEL_DIR/model_card.json: ref_nll_512 and dev_docs.<name>.nll_first2048 become the fp16 weights' figures (the fp32
weights' ones move to *_fp32 keys), dev_loss_first2048_cpu_f16 is their mean."""
import json, os, struct, sys
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from l2c_torch import Cfg, Model, l2c_tensors, load_jsonl

def load_f16(path):
    b = open(path, 'rb').read(); hdr = struct.unpack('<7i', b[:28]); assert hdr[5] > 0, 'tied classifier expected'
    c = Cfg(*hdr[:5], hdr[5], hdr[6]); m = Model(c, init=False)
    a = np.frombuffer(b, dtype='<f2', offset=28).astype(np.float32); p = 0
    with torch.no_grad():
        for _, t in l2c_tensors(m):
            n = t.numel(); t.copy_(torch.from_numpy(a[p:p + n].copy()).view_as(t)); p += n
    assert p + 2 * c.seq_len * (c.hs // 2) == len(a), (p, len(a))
    return m.eval(), c

here = os.path.dirname(os.path.abspath(__file__))
mdir = sys.argv[1]; data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, '..', '..', '..', 'data')
torch.set_num_threads(int(os.environ.get('THREADS', '2')))
m, c = load_f16(os.path.join(mdir, 'model-f16.bin'))
docs = load_jsonl(os.path.join(data, 'pycode-dev.tokens.jsonl'))
ref = docs[0]['ids'][:512]
with torch.no_grad():
    lo = m(torch.tensor([ref]))[0]
    ref_nll = F.cross_entropy(lo[:-1], torch.tensor(ref[1:])).item()
with open(os.path.join(mdir, 'reference-logits.bin'), 'wb') as f:
    f.write(struct.pack('<3i', 512, 8, c.vocab)); f.write(np.array(ref, dtype='<i4').tobytes())
    f.write(lo[-8:].numpy().astype('<f4').tobytes())
print('ref nll 512 (fp16 weights) %.6f' % ref_nll, flush=True)
card_path = os.path.join(mdir, 'model_card.json'); card = json.load(open(card_path))
per = {}
with torch.no_grad():
    for d in docs:
        ids = d['ids'][:c.seq_len]; x = torch.tensor([ids]); l = m(x)[0]
        per[d['name']] = F.cross_entropy(l[:-1], x[0, 1:]).item(); print(d['name'], '%.6f' % per[d['name']], flush=True)
if 'ref_nll_512_fp32' not in card:
    card['ref_nll_512_fp32'] = card['ref_nll_512']
card['ref_nll_512'] = ref_nll
for name, v in card['dev_docs'].items():
    if 'nll_first2048_fp32' not in v:
        v['nll_first2048_fp32'] = v['nll_first2048']
    v['nll_first2048'] = per[name]
card['dev_loss_first2048_cpu_f16'] = float(np.mean(list(per.values())))
card['model_f16_bin_bytes'] = os.path.getsize(os.path.join(mdir, 'model-f16.bin'))
card['reference_weights'] = ('fp16 (model-f16.bin, upcast to fp32 in PyTorch): reference-logits.bin, ref_nll_512, '
                             'dev_docs.*.nll_first2048, dev_loss_first2048_cpu_f16; the *_fp32 keys and longrange_dev are '
                             'of the trained fp32 weights (not shipped)')
json.dump(card, open(card_path, 'w'), indent=1)
print('dev nll first 2048 (fp16 weights, %d files) %.6f' % (len(per), card['dev_loss_first2048_cpu_f16']))
