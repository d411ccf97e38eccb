// The job's key-value store for torch.distributed: a hash table of byte
// keys and values per job, and the requests parked until their keys exist.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store.h"

#include "daemon/job.h"

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    size_t key_len, value_len;
    uint8_t *value;
    uint8_t key[];
} entry;

// A connection that opened a store: at most one request parked (GET or
// WAIT whose keys are missing); a new request replaces it (the client gave
// up on the old one). A parked client waits in the store's waits table
// under one key it misses, so a set looks only at those waiting for it.
struct store_client {
    conn *c;
    job *j;
    store_client *prev, *next; // in the store's client list
    bool parked;
    uint64_t id;
    Hgrid__StoreOp op;
    size_t num_keys;
    ProtobufCBinaryData *keys; // copies
    size_t missing;                      // the key it waits under
    uint64_t wait_hash;                  // its hash
    store_client *wait_prev, *wait_next; // in that bucket of the waits table
};

struct gridd_store {
    entry **buckets;
    size_t num_buckets, num_keys, bytes;
    store_client *clients;
    store_client **waits; // parked clients by the hash of the key they wait for
    size_t num_wait_buckets, num_parked;
};

static uint64_t hash_key(const uint8_t *key, size_t len)
{
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return h;
}

static entry **find_slot(gridd_store *s, const ProtobufCBinaryData *key)
{
    uint64_t h = hash_key(key->data, key->len);
    entry **p = &s->buckets[h & (s->num_buckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->key_len == key->len && !memcmp((*p)->key, key->data, key->len))
            break;
    return p;
}

static entry *find(gridd_store *s, const ProtobufCBinaryData *key)
{
    return s->num_buckets ? *find_slot(s, key) : NULL;
}

static int grow(gridd_store *s)
{
    size_t n = s->num_buckets ? 2 * s->num_buckets : 64;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < s->num_buckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->num_buckets = n;
    return 0;
}

// Sets key to value; NULL with why when a limit or memory says no.
static entry *put(gridd_store *s, const ProtobufCBinaryData *key, const uint8_t *value,
                  size_t value_len, char *why, size_t whylen)
{
    entry *e = find(s, key);
    size_t old = e ? e->value_len : 0;
    size_t grown = s->bytes - old + value_len + (e ? 0 : key->len);
    if ((!e && s->num_keys >= GRIDD_STORE_MAX_KEYS) || grown > GRIDD_STORE_MAX_BYTES) {
        snprintf(why, whylen, "the job's store is full (%zu keys, %zu bytes; limits %d keys, "
                 "%u bytes)", s->num_keys, s->bytes, GRIDD_STORE_MAX_KEYS, GRIDD_STORE_MAX_BYTES);
        return NULL;
    }
    uint8_t *copy = malloc(value_len ? value_len : 1);
    if (!copy || (!e && s->num_keys >= s->num_buckets && grow(s))) {
        free(copy);
        snprintf(why, whylen, "gridd is out of memory");
        return NULL;
    }
    if (!e) {
        e = malloc(sizeof *e + key->len);
        if (!e) {
            free(copy);
            snprintf(why, whylen, "gridd is out of memory");
            return NULL;
        }
        e->hash = hash_key(key->data, key->len);
        e->key_len = key->len;
        memcpy(e->key, key->data, key->len);
        e->value = NULL;
        e->value_len = 0;
        entry **b = &s->buckets[e->hash & (s->num_buckets - 1)];
        e->next = *b;
        *b = e;
        s->num_keys++;
    }
    memcpy(copy, value, value_len);
    free(e->value);
    e->value = copy;
    e->value_len = value_len;
    s->bytes = grown;
    return e;
}

static bool del(gridd_store *s, const ProtobufCBinaryData *key)
{
    if (!s->num_buckets)
        return false;
    entry **p = find_slot(s, key), *e = *p;
    if (!e)
        return false;
    *p = e->next;
    s->bytes -= e->key_len + e->value_len;
    s->num_keys--;
    free(e->value);
    free(e);
    return true;
}

// ---- replies

static void reply(store_client *sc, uint64_t id, const uint8_t *value, size_t len,
                  int64_t number, const char *error)
{
    Hgrid__StoreReply r;
    hgrid__store_reply__init(&r);
    r.id = id;
    r.value.data = (uint8_t *)value;
    r.value.len = len;
    r.number = number;
    r.error = (char *)(error ? error : "");
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_STORE_REPLY;
    env.store_reply = &r;
    if (!sc->c->closing && !sc->c->draining)
        conn_send(sc->c, &env);
}

static void wait_insert(gridd_store *s, store_client *sc)
{
    store_client **b = &s->waits[sc->wait_hash & (s->num_wait_buckets - 1)];
    sc->wait_prev = NULL;
    sc->wait_next = *b;
    if (*b)
        (*b)->wait_prev = sc;
    *b = sc;
}

static void wait_remove(gridd_store *s, store_client *sc)
{
    if (sc->wait_prev)
        sc->wait_prev->wait_next = sc->wait_next;
    else
        s->waits[sc->wait_hash & (s->num_wait_buckets - 1)] = sc->wait_next;
    if (sc->wait_next)
        sc->wait_next->wait_prev = sc->wait_prev;
}

// Room for one more parked client (the table grows with them); -1: no memory.
static int wait_reserve(gridd_store *s)
{
    if (s->num_parked < s->num_wait_buckets)
        return 0;
    size_t n = s->num_wait_buckets ? 2 * s->num_wait_buckets : 64;
    store_client **b = calloc(n, sizeof *b), **old = s->waits;
    if (!b)
        return -1;
    size_t old_n = s->num_wait_buckets;
    s->waits = b;
    s->num_wait_buckets = n;
    for (size_t i = 0; i < old_n; i++)
        for (store_client *sc = old[i], *next; sc; sc = next) {
            next = sc->wait_next;
            wait_insert(s, sc);
        }
    free(old);
    return 0;
}

static void unpark(store_client *sc)
{
    if (sc->parked) {
        gridd_store *s = sc->j->store;
        wait_remove(s, sc);
        s->num_parked--;
    }
    for (size_t i = 0; i < sc->num_keys; i++)
        free(sc->keys[i].data);
    free(sc->keys);
    sc->keys = NULL;
    sc->num_keys = 0;
    sc->parked = false;
}

// The index of the first of keys[0..n) that is absent, or n.
static size_t first_missing(gridd_store *s, const ProtobufCBinaryData *keys, size_t n)
{
    size_t i = 0;
    while (i < n && find(s, &keys[i]))
        i++;
    return i;
}

// key was set: answers the parked requests that waited for it and now have
// all their keys; the others wait on under a key they still miss.
static void wake(gridd_store *s, const ProtobufCBinaryData *key)
{
    if (!s->num_parked)
        return;
    uint64_t h = hash_key(key->data, key->len);
    for (store_client *sc = s->waits[h & (s->num_wait_buckets - 1)], *next; sc; sc = next) {
        next = sc->wait_next; // a failed send closes sc's connection and frees sc
        const ProtobufCBinaryData *waited = &sc->keys[sc->missing];
        if (sc->wait_hash != h || waited->len != key->len ||
            memcmp(waited->data, key->data, key->len))
            continue;
        size_t missing = first_missing(s, sc->keys, sc->num_keys);
        if (missing < sc->num_keys) {
            wait_remove(s, sc);
            sc->missing = missing;
            sc->wait_hash = hash_key(sc->keys[missing].data, sc->keys[missing].len);
            wait_insert(s, sc);
            continue;
        }
        const entry *e = sc->op == HGRID__STORE_OP__STORE_GET ? find(s, &sc->keys[0]) : NULL;
        uint64_t id = sc->id;
        unpark(sc);
        reply(sc, id, e ? e->value : NULL, e ? e->value_len : 0, 0, NULL);
    }
}

// Parks sc's request until keys (of which keys[missing] is absent) all exist.
static int park(store_client *sc, const Hgrid__StoreRequest *rq, const ProtobufCBinaryData *keys,
                size_t n, size_t missing)
{
    gridd_store *s = sc->j->store;
    if (wait_reserve(s))
        return -1;
    sc->keys = calloc(n ? n : 1, sizeof *sc->keys);
    if (!sc->keys)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sc->keys[i].data = malloc(keys[i].len ? keys[i].len : 1);
        if (!sc->keys[i].data) {
            sc->num_keys = i;
            unpark(sc);
            return -1;
        }
        memcpy(sc->keys[i].data, keys[i].data, keys[i].len);
        sc->keys[i].len = keys[i].len;
    }
    sc->num_keys = n;
    sc->parked = true;
    sc->id = rq->id;
    sc->op = rq->op;
    sc->missing = missing;
    sc->wait_hash = hash_key(keys[missing].data, keys[missing].len);
    wait_insert(s, sc);
    s->num_parked++;
    return 0;
}

// ADD: the key holds a decimal number (absent: 0).
static void add(gridd_store *s, store_client *sc, const Hgrid__StoreRequest *rq)
{
    char buf[32], why[160];
    long long now = 0, by;
    entry *e = find(s, &rq->key);
    if (e) {
        if (e->value_len >= sizeof buf) {
            reply(sc, rq->id, NULL, 0, 0, "add: the key's value is not a number");
            return;
        }
        memcpy(buf, e->value, e->value_len);
        buf[e->value_len] = 0;
        char *end;
        now = strtoll(buf, &end, 10);
        if (end == buf || *end) {
            reply(sc, rq->id, NULL, 0, 0, "add: the key's value is not a number");
            return;
        }
    }
    if (rq->value.len >= sizeof buf) {
        reply(sc, rq->id, NULL, 0, 0, "add: the increment is not a number");
        return;
    }
    memcpy(buf, rq->value.data, rq->value.len);
    buf[rq->value.len] = 0;
    char *end;
    by = strtoll(buf, &end, 10);
    if (end == buf || *end) {
        reply(sc, rq->id, NULL, 0, 0, "add: the increment is not a number");
        return;
    }
    now += by;
    int len = snprintf(buf, sizeof buf, "%lld", now);
    if (!put(s, &rq->key, (const uint8_t *)buf, (size_t)len, why, sizeof why)) {
        reply(sc, rq->id, NULL, 0, 0, why);
        return;
    }
    reply(sc, rq->id, NULL, 0, now, NULL);
    wake(s, &rq->key);
}

// torch's compareSet: an absent key is set only when expected is empty.
static void compare_set(gridd_store *s, store_client *sc, const Hgrid__StoreRequest *rq)
{
    entry *e = find(s, &rq->key);
    char why[160];
    bool matches = e ? e->value_len == rq->expected.len &&
                           !memcmp(e->value, rq->expected.data, rq->expected.len)
                     : rq->expected.len == 0;
    if (!matches) {
        reply(sc, rq->id, e ? e->value : rq->expected.data, e ? e->value_len : rq->expected.len, 0,
              NULL);
        return;
    }
    if (!(e = put(s, &rq->key, rq->value.data, rq->value.len, why, sizeof why))) {
        reply(sc, rq->id, NULL, 0, 0, why);
        return;
    }
    reply(sc, rq->id, e->value, e->value_len, 0, NULL);
    wake(s, &rq->key);
}

static void request(store_client *sc, const Hgrid__StoreRequest *rq)
{
    gridd_store *s = sc->j->store;
    if (sc->parked)
        unpark(sc);
    char why[160];
    switch (rq->op) {
    case HGRID__STORE_OP__STORE_SET:
        if (!put(s, &rq->key, rq->value.data, rq->value.len, why, sizeof why)) {
            reply(sc, rq->id, NULL, 0, 0, why);
            return;
        }
        reply(sc, rq->id, NULL, 0, 0, NULL);
        wake(s, &rq->key);
        return;
    case HGRID__STORE_OP__STORE_GET:
    case HGRID__STORE_OP__STORE_WAIT: {
        bool get = rq->op == HGRID__STORE_OP__STORE_GET;
        const ProtobufCBinaryData *keys = get ? &rq->key : rq->keys;
        size_t n = get ? 1 : rq->n_keys;
        size_t missing = first_missing(s, keys, n);
        if (missing == n) {
            const entry *e = get ? find(s, &rq->key) : NULL;
            reply(sc, rq->id, e ? e->value : NULL, e ? e->value_len : 0, 0, NULL);
        } else if (park(sc, rq, keys, n, missing)) {
            reply(sc, rq->id, NULL, 0, 0, "gridd is out of memory");
        }
        return;
    }
    case HGRID__STORE_OP__STORE_ADD:
        add(s, sc, rq);
        return;
    case HGRID__STORE_OP__STORE_COMPARE_SET:
        compare_set(s, sc, rq);
        return;
    case HGRID__STORE_OP__STORE_CHECK:
        reply(sc, rq->id, NULL, 0, first_missing(s, rq->keys, rq->n_keys) == rq->n_keys, NULL);
        return;
    case HGRID__STORE_OP__STORE_DELETE:
        reply(sc, rq->id, NULL, 0, del(s, &rq->key), NULL);
        return;
    case HGRID__STORE_OP__STORE_NUM_KEYS:
        reply(sc, rq->id, NULL, 0, (int64_t)s->num_keys, NULL);
        return;
    default:
        snprintf(why, sizeof why, "unknown store operation %d", (int)rq->op);
        reply(sc, rq->id, NULL, 0, 0, why);
    }
}

static void open_store(conn *c, const Hgrid__StoreOpen *o)
{
    if (c->job || c->store) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "StoreOpen on a connection that already joined or opened a store");
        return;
    }
    // As for a Hello: an unknown job and a wrong token get the same answer.
    static job_record nobody = {.token_len = JOB_TOKEN_MAX};
    job *j = job_find(c->srv, o->job);
    if (!state_token_matches(j ? &j->rec : &nobody, o->token.data, o->token.len) || !j) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_TOKEN,
                  "unknown job '%.64s' or wrong token; use the job name and token hgridctl "
                  "submit printed", o->job);
        return;
    }
    if (job_ended(j)) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_UNKNOWN_JOB, "job %s ended; its store is gone",
                  j->rec.name);
        return;
    }
    if (!j->store && !(j->store = calloc(1, sizeof *j->store))) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_LIMIT, "gridd is out of memory");
        return;
    }
    store_client *sc = calloc(1, sizeof *sc);
    if (!sc) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_LIMIT, "gridd is out of memory");
        return;
    }
    sc->c = c;
    sc->j = j;
    sc->next = j->store->clients;
    if (sc->next)
        sc->next->prev = sc;
    j->store->clients = sc;
    c->store = sc;
    conn_list_remove(c); // the Hello deadline: a store connection may idle
    c->reader.max_frame = c->srv->opt.max_frame;
    reply(sc, 0, NULL, 0, 0, NULL);
}

void store_handle(conn *c, const Hgrid__Envelope *env)
{
    if (env->msg_case == HGRID__ENVELOPE__MSG_STORE_OPEN) {
        open_store(c, env->store_open);
        return;
    }
    if (!c->store) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "StoreRequest before an accepted StoreOpen; open the job's store first");
        return;
    }
    request(c->store, env->store_request);
}

static void detach(store_client *sc)
{
    gridd_store *s = sc->j->store;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        s->clients = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    unpark(sc);
    sc->c->store = NULL;
    free(sc);
}

void store_conn_gone(conn *c)
{
    if (c->store)
        detach(c->store);
}

void store_job_gone(job *j)
{
    gridd_store *s = j->store;
    if (!s)
        return;
    while (s->clients) {
        conn *c = s->clients->c;
        detach(s->clients);
        conn_fail(c, HGRID__ERROR_CODE__ERROR_UNKNOWN_JOB, "job %s ended; its store is gone",
                  j->rec.name);
    }
    for (size_t i = 0; i < s->num_buckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->value);
            free(e);
        }
    free(s->buckets);
    free(s->waits);
    free(s);
    j->store = NULL;
}
