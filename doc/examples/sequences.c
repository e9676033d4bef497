/* doc/recipes.md, "Threads and several sequences": one kf_cache per
 * sequence, each driven by its own host thread. The library's own OpenMP
 * threads are turned off (n_threads = 1) because the host already keeps
 * the cores busy. Checks that a sequence's result is the same whether it
 * ran alone or beside others. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <keyformer.h>

enum { N_SEQ = 3, HEADS = 4, KV_HEADS = 2, DIM = 8, CAPACITY = 48 };
enum { PROMPT = 32, STEPS = 8 };

typedef struct sequence {
    kf_cache *cache; /* this sequence's selection state, nobody else's */
    unsigned seed;   /* what makes the sequences differ */
    float logits[HEADS * PROMPT * PROMPT];
    int32_t kept[CAPACITY];
    uint32_t n_kept;
    int status;
} sequence;

static float rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 4096.0f;
}

static void *run_sequence(void *arg)
{
    sequence *seq = arg;
    unsigned s = seq->seed;
    uint32_t n_old = 0, rows = PROMPT;
    int rc = KF_OK;
    for (int step = 0; step <= STEPS && rc == KF_OK; step++) {
        uint32_t n_slots = n_old + rows;
        for (uint32_t e = 0; e < HEADS * rows * n_slots; e++) {
            uint32_t j = e % n_slots, i = e / n_slots % rows;
            seq->logits[e] = j > n_old + i ? -INFINITY : rnd(&s);
        }
        kf_logits_view lv = { seq->logits, rows, n_slots, n_slots,
                              (size_t)rows * n_slots, KF_LOGITS_CAUSAL, 0 };
        rc = kf_observe_logits(seq->cache, 0, &lv);
        if (rc == KF_OK)
            rc = kf_select(seq->cache, 0);
        if (rc == KF_OK) /* a real host passes its K/V views here */
            rc = kf_compact(seq->cache, 0, NULL, NULL);
        kf_slot_count(seq->cache, 0, 0, &n_old);
        rows = 1;
    }
    const int32_t *pos;
    kf_slot_positions(seq->cache, 0, 0, &pos, &seq->n_kept);
    memcpy(seq->kept, pos, seq->n_kept * sizeof *pos);
    seq->status = rc;
    return NULL;
}

static int create(sequence *seq, unsigned seed)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = 1;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = DIM;
    cfg.capacity = CAPACITY;
    cfg.n_threads = 1; /* the host's threads already use the cores */
    cfg.seed = 42;     /* the same seed: same inputs, same selection */
    seq->seed = seed;
    return kf_cache_create(&seq->cache, &cfg);
}

static sequence seqs[N_SEQ], alone;

int main(void)
{
    pthread_t threads[N_SEQ];
    for (int i = 0; i < N_SEQ; i++) {
        if (create(&seqs[i], 100u + (unsigned)i) != KF_OK)
            return 1;
        pthread_create(&threads[i], NULL, run_sequence, &seqs[i]);
    }
    for (int i = 0; i < N_SEQ; i++)
        pthread_join(threads[i], NULL);

    /* sequence 1 again, alone: the same positions survive */
    if (create(&alone, 101u) != KF_OK)
        return 1;
    run_sequence(&alone);
    int ok = alone.status == KF_OK && alone.n_kept == seqs[1].n_kept
             && !memcmp(alone.kept, seqs[1].kept, alone.n_kept * sizeof(int32_t));
    for (int i = 0; i < N_SEQ; i++) {
        ok = ok && seqs[i].status == KF_OK;
        printf("sequence %d: %s, %u slots kept\n", i,
               kf_strerror(seqs[i].status), seqs[i].n_kept);
        kf_cache_destroy(&seqs[i].cache);
    }
    kf_cache_destroy(&alone.cache);
    printf("%s\n", ok ? "threads do not change the result" : "MISMATCH");
    return ok ? 0 : 1;
}
