// libhgrid against a scripted gridd in the same thread: mint, assignment
// checks against the layout engine, accessors, ready/heartbeat, abort,
// release, refusal, assignments that must be refused, reconnecting, the
// end of a job (Done, Failure, outcomes) and coordinator addresses.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libhgrid/assignment_check.h"
#include "libhgrid/hgrid.h"
#include "libhgrid/hgrid_comms.h"
#include "libhgrid/hgrid_layout.h"
#include "tests/check.h"
#include "wire/wire.h"

// ---- a scripted gridd

typedef struct {
    int listen_fd, fd;
    char addr[64];
} fake_gridd;

static void fake_listen(fake_gridd *g)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    g->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (g->listen_fd < 0 || bind(g->listen_fd, (struct sockaddr *)&sa, sizeof sa) ||
        listen(g->listen_fd, 4) || getsockname(g->listen_fd, (struct sockaddr *)&sa, &len)) {
        perror("test_client_lib: fake gridd");
        exit(1);
    }
    snprintf(g->addr, sizeof g->addr, "127.0.0.1:%d", ntohs(sa.sin_port));
}

static Hgrid__Envelope *fake_recv(fake_gridd *g)
{
    char err[256];
    Hgrid__Envelope *env = wire_recv(g->fd, WIRE_DEFAULT_MAX_FRAME, 2000, err, sizeof err);
    CHECK(env != NULL, "fake gridd receive: %s", err);
    return env;
}

static void fake_send(fake_gridd *g, Hgrid__Envelope *env)
{
    CHECK(wire_send(g->fd, env) == 0, "fake gridd send failed");
}

// Deterministic id of a group: its (module, canonical kind, index).
static void group_id(int module, int kind, int index, uint8_t *id)
{
    for (int i = 0; i < ASSIGN_ID_BYTES; i++)
        id[i] = (uint8_t)(module * 131 + kind * 17 + index * 7 + i);
}

// An Assignment as gridd should build it for rank, with minted ids (the
// rank's own, in mint order) placed in the groups it leads.
typedef struct {
    Hgrid__Assignment a;
    wire_layout layout;
    Hgrid__Coordinates coords;
    Hgrid__Group groups[ASSIGN_MAX_GROUPS], *gp[ASSIGN_MAX_GROUPS];
    uint8_t ids[ASSIGN_MAX_GROUPS][ASSIGN_ID_BYTES];
    Hgrid__BridgePeer peers[64], *pp[64];
    Hgrid__ModuleAssignment colocated, *colocated_ptr;
    Hgrid__Coordinates colocated_coords;
    char names[ASSIGN_MAX_GROUPS][HG_GROUP_NAME_LEN];
} built_assignment;

static void build(built_assignment *b, const assign_ref *ref, int rank, uint64_t generation,
                  const uint8_t *minted)
{
    const hg_plan *p = &ref->plan;
    hgrid__assignment__init(&b->a);
    wire_layout_from_spec(&p->spec, &b->layout);
    hgrid__coordinates__init(&b->coords);
    hg_coords c;
    hg_rank_coords(p, rank, &c);
    b->coords = (Hgrid__Coordinates){b->coords.base, c.tp, c.cp, c.dp, c.pp, c.ep, c.expt_tp,
                                     c.expt_dp};
    b->a.generation = generation;
    b->a.layout = &b->layout.layout;
    b->a.rank = (uint32_t)rank;
    b->a.world_size = (uint32_t)p->world_size;
    b->a.module = (Hgrid__Module)c.module;
    b->a.module_index = (uint32_t)c.module_index;
    b->a.coordinates = &b->coords;
    b->a.job = "unit";
    assign_group want[ASSIGN_MAX_GROUPS];
    int n = assign_expected_groups(ref, rank, want), which[ASSIGN_MAX_GROUPS];
    int led = assign_mint_plan(ref, rank, which);
    for (int i = 0; i < n; i++) {
        hgrid__group__init(&b->groups[i]);
        hg_rank_group rg = {want[i].kind, want[i].bridge, want[i].canonical, want[i].index,
                            want[i].size, want[i].rank_in_group};
        b->groups[i].name = (char *)hg_rank_group_name(p, &rg, b->names[i], sizeof b->names[i]);
        b->groups[i].size = (uint32_t)want[i].size;
        b->groups[i].rank_in_group = (uint32_t)want[i].rank_in_group;
        b->groups[i].index = (uint32_t)want[i].index;
        group_id(want[i].module_index, want[i].canonical, want[i].index, b->ids[i]);
        for (int m = 0; minted && m < led; m++)
            if (want[which[m]].canonical == want[i].canonical)
                memcpy(b->ids[i], minted + m * ASSIGN_ID_BYTES, ASSIGN_ID_BYTES);
        bool carries = want[i].size > 1 && want[i].canonical == want[i].kind; // once per communicator
        b->groups[i].nccl_id = (ProtobufCBinaryData){carries ? ASSIGN_ID_BYTES : 0, b->ids[i]};
        b->gp[i] = &b->groups[i];
    }
    // A colocated rank: the first module's groups, then the llm's in colocated_modules.
    int first = 0;
    while (first < n && want[first].module_index == want[0].module_index)
        first++;
    b->a.n_groups = (size_t)first;
    b->a.groups = b->gp;
    if (first < n) {
        hg_coords lc;
        hg_module_coords(&p->modules[want[first].module_index], rank, &lc);
        hgrid__coordinates__init(&b->colocated_coords);
        b->colocated_coords = (Hgrid__Coordinates){b->colocated_coords.base, lc.tp, lc.cp, lc.dp,
                                                   lc.pp, lc.ep, lc.expt_tp, lc.expt_dp};
        hgrid__module_assignment__init(&b->colocated);
        b->colocated.module_index = (uint32_t)want[first].module_index;
        b->colocated.module = (Hgrid__Module)lc.module;
        b->colocated.coordinates = &b->colocated_coords;
        b->colocated.n_groups = (size_t)(n - first);
        b->colocated.groups = b->gp + first;
        b->colocated_ptr = &b->colocated;
        b->a.n_colocated_modules = 1;
        b->a.colocated_modules = &b->colocated_ptr;
    }
    size_t np = 0;
    for (int e = 0; hg_plan_has_bridge(p) && e < hg_bridge_num_edges(p, 0); e++) {
        int enc, llm;
        hg_bridge_edge(p, 0, e, &enc, &llm);
        if (enc != rank && llm != rank)
            continue;
        int peer = enc == rank ? llm : enc;
        hgrid__bridge_peer__init(&b->peers[np]);
        b->peers[np].rank = (uint32_t)peer;
        b->peers[np].rank_in_bridge = (uint32_t)hg_bridge_index_of_rank(p, 0, peer);
        b->peers[np].send = enc == rank;
        b->pp[np] = &b->peers[np];
        np++;
    }
    b->a.n_bridge_peers = np;
    b->a.bridge_peers = b->pp;
}

static void send_assignment(fake_gridd *g, built_assignment *b)
{
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ASSIGNMENT;
    env.assignment = &b->a;
    fake_send(g, &env);
}

static void send_mint_request(fake_gridd *g, uint64_t generation, int count)
{
    Hgrid__MintRequest req = HGRID__MINT_REQUEST__INIT;
    req.generation = generation;
    req.count = (uint32_t)count;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_MINT_REQUEST;
    env.mint_request = &req;
    fake_send(g, &env);
}

static void ref_of(assign_ref *ref, const hg_layout_spec *spec_in)
{
    hg_layout_spec spec = *spec_in;
    wire_layout l;
    wire_layout_from_spec(&spec, &l);
    char err[256];
    if (assign_ref_build(ref, &l.layout, err, sizeof err)) {
        fprintf(stderr, "test_client_lib: %s\n", err);
        exit(1);
    }
}

static void plan_of(assign_ref *ref, int llm_pp)
{
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    spec.llm_pp = llm_pp;
    ref_of(ref, &spec);
}

// A vanished gridd host is noticed: limits on unacknowledged data and on
// an idle link's keepalive probes.
static void check_watches_peer(const hgrid_worker *w, const char *when)
{
    unsigned timeout_ms = 0;
    int keepalive = 0;
    socklen_t len = sizeof timeout_ms;
    getsockopt(hgrid_fd(w), IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, &len);
    len = sizeof keepalive;
    getsockopt(hgrid_fd(w), SOL_SOCKET, SO_KEEPALIVE, &keepalive, &len);
    CHECK(timeout_ms == WIRE_PEER_TIMEOUT_MS && keepalive == 1,
          "%s: TCP_USER_TIMEOUT %u ms, SO_KEEPALIVE %d", when, timeout_ms, keepalive);
}

// Connects a worker and has the fake gridd accept it and read its Hello.
static hgrid_worker *join_with(fake_gridd *g, int requested_rank, hgrid_mint_fn mint)
{
    char err[256];
    hgrid_worker *w = hgrid_connect(g->addr, err, sizeof err);
    CHECK(w != NULL, "connect: %s", err);
    if (!w)
        exit(1);
    check_watches_peer(w, "first connection");
    g->fd = accept(g->listen_fd, NULL, NULL);
    hgrid_hello_options opt = {.job = "unit", .token = "secret", .host = "node-a", .device = 3,
                               .requested_rank = requested_rank, .dry_run = true,
                               .mint = mint};
    CHECK_EQ(hgrid_hello(w, &opt), HGRID_OK);
    Hgrid__Envelope *env = fake_recv(g);
    if (env) {
        CHECK_EQ(env->msg_case, HGRID__ENVELOPE__MSG_HELLO);
        Hgrid__Hello *h = env->hello;
        CHECK(!strcmp(h->job, "unit") && !strcmp(h->host, "node-a"), "hello job/host");
        CHECK(h->token.len == 6 && !memcmp(h->token.data, "secret", 6), "hello token");
        CHECK_EQ(h->local_device, 3);
        CHECK_EQ(h->dry_run, 1);
        CHECK_EQ(h->assignment_only, mint == NULL); // without a minter: assignment-only
        CHECK_EQ(h->requested_rank != NULL, requested_rank >= 0);
        if (h->requested_rank)
            CHECK_EQ(h->requested_rank->rank, (unsigned)requested_rank);
        wire_free_envelope(env);
    }
    return w;
}

static hgrid_worker *join(fake_gridd *g, int requested_rank)
{
    return join_with(g, requested_rank, hgrid_nccl_mint);
}

static void part(hgrid_worker *w, fake_gridd *g)
{
    hgrid_close(w);
    close(g->fd);
}

// DESIGN's example (llm tp2 dp2 pp2 at offset 4): rank 11, which leads no group.
static void test_member_accessors(fake_gridd *g)
{
    assign_ref ref;
    plan_of(&ref, 2);
    hgrid_worker *w = join(g, 11);
    built_assignment b;
    build(&b, &ref, 11, 1, NULL);
    send_assignment(g, &b);
    int st = hgrid_wait_assignment(w, 2000);
    CHECK(st == HGRID_OK, "status %d: %s", st, hgrid_error(w));
    CHECK_EQ(hgrid_rank(w), 11);
    CHECK_EQ(hgrid_world_size(w), 12);
    CHECK_EQ(hgrid_generation(w), 1);
    CHECK_EQ(hgrid_module(w), HG_MODULE_LLM);
    CHECK_EQ(hgrid_coords(w)->tp, 1);
    CHECK_EQ(hgrid_coords(w)->pp, 1);
    CHECK_EQ(hgrid_coords(w)->dp, 1);
    CHECK(!strcmp(hgrid_job(w), "unit"), "job %s", hgrid_job(w));
    const hgrid_group *tp = hgrid_group_find(w, "tp"), *dp = hgrid_group_find(w, "dp");
    const hgrid_group *pp = hgrid_group_find(w, "pp"), *mp = hgrid_group_find(w, "mp");
    CHECK(tp && tp->members[0] == 10 && tp->members[1] == 11 && tp->rank_in_group == 1, "tp");
    CHECK(dp && dp->members[0] == 9 && dp->members[1] == 11 && dp->rank_in_group == 1 && dp->index == 3, "dp");
    CHECK(pp && pp->members[0] == 7 && pp->members[1] == 11, "pp");
    CHECK(mp && mp->size == 4 && mp->members[0] == 6 && mp->members[3] == 11, "mp");
    const hgrid_group *dp_cp = hgrid_group_find(w, "dp_cp");
    CHECK(dp_cp && hgrid_group_at(w, dp_cp->shares_with) == dp, "dp_cp shares dp's communicator");
    CHECK(dp_cp && dp && dp->nccl_id && dp_cp->nccl_id &&
              !memcmp(dp_cp->nccl_id, dp->nccl_id, ASSIGN_ID_BYTES),
          "dp_cp answers with dp's id, which the Assignment carried once");
    CHECK(hgrid_group_find(w, "cp") && !hgrid_group_find(w, "cp")->nccl_id, "cp has no id");
    CHECK(hgrid_group_find(w, "bridge") == NULL, "rank 11 is no bridge leader");
    CHECK(hgrid_group_find(w, "pos_embd") == NULL, "pos_embd skips the last stage");
    CHECK(hgrid_group_find(w, "embd") != NULL, "embd holds the last stage");
    CHECK_EQ(hgrid_num_bridge_peers(w), 0);
    // ready and heartbeats carry the generation; step_time_s is measured
    CHECK_EQ(hgrid_ready(w), HGRID_OK);
    CHECK_EQ(hgrid_heartbeat(w, 5, 2.5f, 100.0f), HGRID_OK);
    Hgrid__Envelope *env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_READY && env->ready->generation == 1, "ready");
    wire_free_envelope(env);
    env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HEARTBEAT, "heartbeat");
    if (env) {
        CHECK_EQ(env->heartbeat->step, 5);
        CHECK(env->heartbeat->loss == 2.5f && env->heartbeat->step_time_s >= 0, "heartbeat values");
    }
    wire_free_envelope(env);
    CHECK_EQ(hgrid_poll(w), HGRID_OK);
    // an old generation's abort is ignored; the current one's is reported
    Hgrid__Abort ab = HGRID__ABORT__INIT;
    ab.generation = 0;
    ab.reason = "stale";
    Hgrid__Envelope out;
    wire_envelope_init(&out);
    out.msg_case = HGRID__ENVELOPE__MSG_ABORT;
    out.abort = &ab;
    fake_send(g, &out);
    ab.generation = 1;
    ab.reason = "worker node-b/1 (rank 7) lost";
    fake_send(g, &out);
    usleep(50000);
    CHECK_EQ(hgrid_poll(w), HGRID_ABORTED);
    CHECK(!strcmp(hgrid_reason(w), "worker node-b/1 (rank 7) lost"), "reason %s", hgrid_reason(w));
    CHECK_EQ(hgrid_heartbeat(w, 6, 0, 0), HGRID_ERR_STATE);
    // the next generation arrives; then the job is released
    build(&b, &ref, 11, 2, NULL);
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_OK);
    CHECK_EQ(hgrid_generation(w), 2);
    Hgrid__Release rel = HGRID__RELEASE__INIT;
    rel.reason = "job cancelled";
    out.msg_case = HGRID__ENVELOPE__MSG_RELEASE;
    out.release = &rel;
    fake_send(g, &out);
    usleep(50000);
    CHECK_EQ(hgrid_poll(w), HGRID_RELEASED);
    CHECK(!strcmp(hgrid_reason(w), "job cancelled"), "release reason");
    part(w, g);
}

// Rank 0 of the default layout leads groups: it mints, and its ids must
// come back in the groups it leads.
// A colocated rank holds both modules: its encoder coordinates and groups,
// then the llm's (hgrid_coords_at(w, 1), groups "llm.tp", ...).
static void test_colocated(fake_gridd *g)
{
    assign_ref ref;
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec); // encoder 2x2, llm tp 2 dp 2: 4 ranks, colocated
    spec.colocated = true;
    ref_of(&ref, &spec);
    hgrid_worker *w = join(g, 3);
    built_assignment b;
    build(&b, &ref, 3, 1, NULL);
    CHECK_EQ(b.a.n_colocated_modules, 1);
    send_assignment(g, &b);
    int st = hgrid_wait_assignment(w, 2000);
    CHECK(st == HGRID_OK, "colocated: status %d: %s", st, hgrid_error(w));
    CHECK_EQ(hgrid_num_modules(w), 2);
    CHECK(hgrid_coords_at(w, 0)->module == HG_MODULE_ENCODER &&
              hgrid_coords_at(w, 1)->module == HG_MODULE_LLM && !hgrid_coords_at(w, 2),
          "colocated rank 3: encoder, then llm");
    const hgrid_group *etp = hgrid_group_find(w, "tp"), *ltp = hgrid_group_find(w, "llm.tp");
    CHECK(etp && ltp && etp->members[0] == 2 && ltp->members[0] == 2 && ltp->rank_in_group == 1,
          "colocated groups tp and llm.tp");
    CHECK(!hgrid_group_find(w, "bridge"), "colocated: no bridge");
    // An Assignment that leaves out the second module is refused.
    b.a.n_colocated_modules = 0;
    send_assignment(g, &b);
    st = hgrid_wait_assignment(w, 2000);
    CHECK(st == HGRID_ERR_MISMATCH && strstr(hgrid_error(w), "0 colocated modules, the engine says 1"),
          "colocated module missing: %d %s", st, hgrid_error(w));
    part(w, g);
}

static void test_leader_mints(fake_gridd *g, bool relay_right)
{
    assign_ref ref;
    plan_of(&ref, 1);
    int count = assign_mint_plan(&ref, 0, NULL);
    CHECK(count >= 3, "rank 0 leads tp, dp, tp_dp and the bridge (%d)", count);
    hgrid_worker *w = join(g, -1);
    send_mint_request(g, 1, count);
    CHECK_EQ(hgrid_wait_assignment(w, 100), HGRID_ERR_TIMEOUT); // minted, replied, waiting
    Hgrid__Envelope *env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_MINT_REPLY, "mint reply");
    if (!env || env->msg_case != HGRID__ENVELOPE__MSG_MINT_REPLY) {
        part(w, g);
        return;
    }
    Hgrid__MintReply *r = env->mint_reply;
    CHECK_EQ(r->generation, 1);
    CHECK_EQ(r->n_ids, (size_t)count);
    uint8_t minted[ASSIGN_MAX_GROUPS * ASSIGN_ID_BYTES];
    for (size_t i = 0; i < r->n_ids && i < ASSIGN_MAX_GROUPS; i++) {
        CHECK_EQ(r->ids[i].len, ASSIGN_ID_BYTES);
        memcpy(minted + i * ASSIGN_ID_BYTES, r->ids[i].data, ASSIGN_ID_BYTES);
    }
    CHECK(count < 2 || memcmp(minted, minted + ASSIGN_ID_BYTES, ASSIGN_ID_BYTES) != 0,
          "distinct ids");
    wire_free_envelope(env);
    if (!relay_right)
        minted[5] ^= 1;
    built_assignment b;
    build(&b, &ref, 0, 1, minted);
    send_assignment(g, &b);
    int st = hgrid_wait_assignment(w, 2000);
    if (relay_right) {
        CHECK_EQ(st, HGRID_OK);
        const hgrid_group *tp = hgrid_group_find(w, "tp"), *bridge = hgrid_group_find(w, "bridge");
        CHECK(tp && !memcmp(tp->nccl_id, minted, ASSIGN_ID_BYTES), "tp carries the minted id");
        CHECK(bridge && bridge->size == 4 && bridge->rank_in_group == 0, "bridge leader");
        CHECK(bridge && !memcmp(bridge->nccl_id, minted + (count - 1) * ASSIGN_ID_BYTES,
                                ASSIGN_ID_BYTES), "bridge id minted last");
        CHECK_EQ(hgrid_num_bridge_peers(w), 1);
        const hgrid_bridge_peer *peer = hgrid_bridge_peer_at(w, 0);
        CHECK(peer && peer->rank == 4 && peer->send && peer->rank_in_bridge == 2, "bridge peer");
    } else {
        CHECK_EQ(st, HGRID_ERR_MISMATCH);
        CHECK(strstr(hgrid_error(w), "not the one it minted") != NULL, "%s", hgrid_error(w));
    }
    part(w, g);
}

// An assignment that disagrees with the engine is refused, naming the field.
static void test_mismatch(fake_gridd *g)
{
    assign_ref ref;
    plan_of(&ref, 2);
    hgrid_worker *w = join(g, -1);
    built_assignment b;
    build(&b, &ref, 9, 1, NULL);
    b.groups[0].rank_in_group = 0; // tp: rank 9 is member 1
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_MISMATCH);
    CHECK(strstr(hgrid_error(w), "group tp has size 2, rank_in_group 0") != NULL, "%s",
          hgrid_error(w));
    part(w, g);
    w = join(g, -1);
    build(&b, &ref, 9, 1, NULL);
    b.coords.dp = 1;
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_MISMATCH);
    CHECK(strstr(hgrid_error(w), "coordinate dp is 1, the engine says 0") != NULL, "%s",
          hgrid_error(w));
    part(w, g);
    w = join(g, -1); // the id of a shared communicator comes once, with its canonical group
    build(&b, &ref, 9, 1, NULL);
    for (size_t i = 0; i < b.a.n_groups; i++)
        if (!strcmp(b.groups[i].name, "dp_cp"))
            b.groups[i].nccl_id.len = ASSIGN_ID_BYTES;
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_MISMATCH);
    CHECK(strstr(hgrid_error(w), "group dp_cp carries a 128-byte id, expected 0") != NULL, "%s",
          hgrid_error(w));
    part(w, g);
}

// Issue 18.12: a MintRequest while a generation runs (no Abort before it)
// is refused, not obeyed.
static void test_mint_mid_generation(fake_gridd *g)
{
    assign_ref ref;
    plan_of(&ref, 2);
    hgrid_worker *w = join(g, 11);
    built_assignment b;
    build(&b, &ref, 11, 1, NULL);
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_OK);
    send_mint_request(g, 2, 3);
    usleep(50000);
    CHECK_EQ(hgrid_poll(w), HGRID_ERR_IO);
    CHECK(strstr(hgrid_error(w), "ids of generation 2 while generation 1 runs") != NULL, "%s",
          hgrid_error(w));
    part(w, g);
}

// Threads of this process (/proc/self/status) and its open descriptors.
static int threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8))
            n = atoi(line + 8);
    if (f)
        fclose(f);
    return n;
}

static int fds_now(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

// Issue 18.12: a worker that mints real NCCL ids (each ncclGetUniqueId
// leaves a bootstrap thread and a listening socket until its group forms)
// obeys MintRequests once per generation and for at most 8 generations that
// never bring an Assignment, whatever gridd sends: 40 generations of 3 ids
// leave at most 8 x 3 threads and sockets, not 120.
static void test_mint_flood(fake_gridd *g)
{
    uint8_t probe[HGRID_ID_BYTES];
    char err[256];
    if (hgrid_nccl_mint(probe, err, sizeof err) != 0) {
        printf("note: ncclGetUniqueId fails here (%s): the real-mint flood is not exercised\n", err);
        return;
    }
    int threads0 = threads_now(), fds0 = fds_now();
    hgrid_worker *w = hgrid_connect(g->addr, err, sizeof err);
    CHECK(w != NULL, "connect: %s", err);
    if (!w)
        return;
    g->fd = accept(g->listen_fd, NULL, NULL);
    hgrid_hello_options opt = {.job = "unit", .token = "secret", .host = "node-a", .device = 0,
                               .requested_rank = -1, .mint = hgrid_nccl_mint};
    CHECK_EQ(hgrid_hello(w, &opt), HGRID_OK);
    wire_free_envelope(fake_recv(g));
    int replies = 0, generations = 0, rc = HGRID_ERR_TIMEOUT;
    uint8_t first[HGRID_ID_BYTES];
    for (uint64_t gen = 1; gen <= 40 && rc == HGRID_ERR_TIMEOUT; gen++) {
        for (int again = 0; again < (gen == 1 ? 2 : 1) && rc == HGRID_ERR_TIMEOUT; again++) {
            send_mint_request(g, gen, 3);
            rc = hgrid_wait_assignment(w, 200); // mints and replies, or gives up
            if (rc != HGRID_ERR_TIMEOUT)
                break;
            Hgrid__Envelope *env = fake_recv(g);
            bool ok = env && env->msg_case == HGRID__ENVELOPE__MSG_MINT_REPLY &&
                      env->mint_reply->generation == gen && env->mint_reply->n_ids == 3;
            CHECK(ok, "a MintReply of 3 ids for generation %llu", (unsigned long long)gen);
            if (ok && gen == 1 && !again)
                memcpy(first, env->mint_reply->ids[0].data, HGRID_ID_BYTES);
            if (ok && gen == 1 && again)
                CHECK(!memcmp(first, env->mint_reply->ids[0].data, HGRID_ID_BYTES),
                      "asked again for generation 1, the same ids");
            replies += ok;
            generations += ok && !again;
            wire_free_envelope(env);
        }
    }
    int threads = threads_now() - threads0, fds = fds_now() - fds0;
    printf("40 generations of MintRequests (3 real NCCL ids each): %d replies, %d generations "
           "minted, +%d threads, +%d descriptors\n", replies, generations, threads, fds);
    CHECK(rc == HGRID_ERR_IO && strstr(hgrid_error(w), "8 generations in a row") != NULL,
          "the worker gives up on the 9th generation: %d %s", rc, hgrid_error(w));
    CHECK(replies == 9 && generations == 8, "%d replies for %d generations", replies, generations);
    CHECK(threads <= 8 * 3 + 2 && fds <= 8 * 3 + 4, "+%d threads, +%d descriptors for 8 x 3 ids",
          threads, fds);
    part(w, g);
}

static void test_refused_and_lost(fake_gridd *g)
{
    hgrid_worker *w = join(g, -1);
    Hgrid__Error e = HGRID__ERROR__INIT;
    e.code = HGRID__ERROR_CODE__ERROR_BAD_TOKEN;
    e.message = "wrong token for job unit";
    Hgrid__Envelope out;
    wire_envelope_init(&out);
    out.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    out.error = &e;
    fake_send(g, &out);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_REFUSED);
    CHECK(!strcmp(hgrid_error(w), "wrong token for job unit"), "%s", hgrid_error(w));
    part(w, g);
    w = join(g, -1);
    hgrid_set_reconnect(w, 0); // no reconnection: the loss is final
    close(g->fd);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_IO);
    CHECK(strstr(hgrid_error(w), "closed the connection") != NULL, "%s", hgrid_error(w));
    hgrid_close(w);
    w = join(g, -1);
    CHECK_EQ(hgrid_wait_assignment(w, 50), HGRID_ERR_TIMEOUT);
    CHECK_EQ(hgrid_ready(w), HGRID_ERR_STATE);
    uint8_t huge[4] = {0x7f, 0, 0, 0}; // a 2 GiB frame header
    CHECK_EQ(write(g->fd, huge, 4), 4);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_IO);
    CHECK(strstr(hgrid_error(w), "exceeds") != NULL, "%s", hgrid_error(w));
    part(w, g);
    char err[256];
    CHECK(hgrid_connect("127.0.0.1:1", err, sizeof err) == NULL, "nothing listens on port 1");
    CHECK(strstr(err, "cannot connect to gridd at 127.0.0.1:1") != NULL, "%s", err);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// Polls as a training loop would until libhgrid is connected again (the
// fake's listening socket takes the connection); then accepts it and
// returns the Hello.
static Hgrid__Envelope *await_rehello(hgrid_worker *w, fake_gridd *g)
{
    double end = seconds() + 5;
    while (hgrid_wake_ms(w) >= 0 && seconds() < end) {
        struct pollfd pfd = {.fd = hgrid_fd(w), .events = POLLIN};
        poll(&pfd, 1, hgrid_wake_ms(w));
        CHECK_EQ(hgrid_poll(w), HGRID_OK);
    }
    CHECK_EQ(hgrid_wake_ms(w), -1);
    check_watches_peer(w, "reconnected");
    g->fd = accept(g->listen_fd, NULL, NULL);
    Hgrid__Envelope *env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HELLO, "a Hello after reconnecting");
    if (env && env->msg_case != HGRID__ENVELOPE__MSG_HELLO) {
        wire_free_envelope(env);
        return NULL;
    }
    return env;
}

// gridd restarts under a running worker: heartbeats and polls neither
// block nor fail; the worker reconnects and says Hello with its rank and
// generation; a Hello turned away as a duplicate is tried again.
static void test_reconnect_running(fake_gridd *g)
{
    assign_ref ref;
    plan_of(&ref, 2);
    hgrid_worker *w = join(g, -1);
    built_assignment b;
    build(&b, &ref, 11, 4, NULL);
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_OK);
    CHECK_EQ(hgrid_ready(w), HGRID_OK);
    Hgrid__Envelope *env = fake_recv(g);
    wire_free_envelope(env);
    close(g->fd); // gridd is gone
    usleep(20000);
    double t0 = seconds();
    CHECK_EQ(hgrid_poll(w), HGRID_OK);
    CHECK(hgrid_wake_ms(w) >= 0, "the loss is noticed");
    CHECK_EQ(hgrid_heartbeat(w, 1, 0, 0), HGRID_OK);
    CHECK(seconds() - t0 < 0.1, "poll and heartbeat do not wait for the reconnection");
    env = await_rehello(w, g);
    if (env) {
        Hgrid__Hello *h = env->hello;
        CHECK(h->requested_rank && h->requested_rank->rank == 11, "the Hello asks for rank 11");
        CHECK(h->resume && h->resume->generation == 4 && h->resume->ready,
              "the Hello resumes generation 4, ready");
        CHECK(!strcmp(h->job, "unit") && h->token.len == 6 && h->local_device == 3, "same job");
        wire_free_envelope(env);
    }
    CHECK_EQ(hgrid_generation(w), 4);
    CHECK_EQ(hgrid_heartbeat(w, 2, 0, 0), HGRID_OK);
    env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HEARTBEAT && env->heartbeat->generation == 4,
          "heartbeats reach the new gridd");
    wire_free_envelope(env);
    // gridd has not noticed the old connection yet: a duplicate, tried again
    Hgrid__Error e = HGRID__ERROR__INIT;
    e.code = HGRID__ERROR_CODE__ERROR_DUPLICATE_DEVICE;
    e.message = "job unit: node-a/3 is already joined";
    Hgrid__Envelope out;
    wire_envelope_init(&out);
    out.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    out.error = &e;
    fake_send(g, &out);
    close(g->fd);
    usleep(20000);
    CHECK_EQ(hgrid_poll(w), HGRID_OK);
    env = await_rehello(w, g);
    CHECK(env && env->hello->resume && env->hello->resume->generation == 4, "resumes again");
    wire_free_envelope(env);
    part(w, g);
}

// Lost while waiting for an assignment: the wait goes on and the new Hello
// carries no generation; with no gridd at all the worker gives up after
// the total it was given.
static void test_reconnect_waiting(fake_gridd *g)
{
    hgrid_worker *w = join(g, -1);
    close(g->fd);
    CHECK_EQ(hgrid_wait_assignment(w, 400), HGRID_ERR_TIMEOUT);
    g->fd = accept(g->listen_fd, NULL, NULL);
    Hgrid__Envelope *env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HELLO && !env->hello->resume &&
              !env->hello->requested_rank, "a fresh Hello while waiting");
    wire_free_envelope(env);
    part(w, g);

    fake_gridd gone;
    fake_listen(&gone);
    w = join(&gone, -1);
    hgrid_set_reconnect(w, 0.8);
    close(gone.fd);
    close(gone.listen_fd);
    // A poll loop through 0.5 s of failed attempts (backoff up to 400 ms):
    // no call waits for the next attempt.
    double t0 = seconds(), longest = 0;
    int not_ok = 0;
    while (seconds() - t0 < 0.5) {
        double t = seconds();
        not_ok += hgrid_poll(w) != HGRID_OK;
        t = seconds() - t;
        longest = t > longest ? t : longest;
        usleep(5000);
    }
    CHECK_EQ(not_ok, 0);
    CHECK(longest < 0.1 && hgrid_wake_ms(w) >= 0, "still trying, no call longer than %.3f s",
          longest);
    CHECK_EQ(hgrid_wait_assignment(w, 5000), HGRID_ERR_IO);
    double took = seconds() - t0;
    CHECK(took >= 0.75 && took < 2, "gave up after %.2f s", took);
    CHECK(strstr(hgrid_error(w), "could not reconnect within 0.8 s") != NULL, "%s", hgrid_error(w));
    hgrid_close(w);
}

// Without a minter: the Hello says assignment-only, an Assignment without
// ids (saying so) is taken, and a MintRequest is refused with a reason.
static void test_assignment_only(fake_gridd *g)
{
    assign_ref ref;
    plan_of(&ref, 2);
    hgrid_worker *w = join_with(g, 4, NULL);
    built_assignment b;
    build(&b, &ref, 4, 1, NULL); // rank 4 leads groups: no ids all the same
    for (size_t i = 0; i < b.a.n_groups; i++)
        b.groups[i].nccl_id.len = 0;
    b.a.assignment_only = true;
    send_assignment(g, &b);
    int st = hgrid_wait_assignment(w, 2000);
    CHECK(st == HGRID_OK, "assignment-only: status %d: %s", st, hgrid_error(w));
    CHECK(hgrid_assignment_only(w) && hgrid_assigned(w), "assignment-only: said so");
    CHECK(hgrid_group_find(w, "tp") && !hgrid_group_find(w, "tp")->nccl_id &&
              hgrid_group_find(w, "tp")->members[1] == 5, "assignment-only: members, no id");
    CHECK(hgrid_coord(w, "tp") == 0 && hgrid_coord(w, "dp") == 0 && hgrid_coord(w, "pp") == 0 &&
              hgrid_coord(w, "expt_dp") == 0 && hgrid_coord(w, "nope") == -1,
          "assignment-only: coordinates by name");
    CHECK(!strcmp(hgrid_module_name(w), "llm"), "module %s", hgrid_module_name(w));
    part(w, g);
    // the same Assignment with ids where an assignment-only one must carry none
    w = join_with(g, 4, NULL);
    build(&b, &ref, 4, 1, NULL);
    b.a.assignment_only = true;
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_MISMATCH);
    part(w, g);
    w = join_with(g, 4, NULL);
    send_mint_request(g, 1, 3);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_ERR_IO);
    CHECK(strstr(hgrid_error(w), "assignment-only") != NULL, "%s", hgrid_error(w));
    part(w, g);
}

static void test_hello_needs_job_and_token(fake_gridd *g)
{
    char err[256];
    hgrid_worker *w = hgrid_connect(g->addr, err, sizeof err);
    g->fd = accept(g->listen_fd, NULL, NULL);
    hgrid_hello_options opt = {.job = "unit", .token = NULL, .requested_rank = -1};
    CHECK_EQ(hgrid_hello(w, &opt), HGRID_ERR_STATE);
    CHECK(strstr(hgrid_error(w), "token") != NULL, "%s", hgrid_error(w));
    part(w, g);
}

static void test_defaults(void)
{
    char host[64];
    setenv("HGRID_HOSTNAME", "node-z", 1);
    hgrid_default_host(host, sizeof host);
    CHECK(!strcmp(host, "node-z"), "host %s", host);
    unsetenv("LOCAL_RANK");
    setenv("SLURM_LOCALID", "5", 1);
    CHECK_EQ(hgrid_default_device(), 5);
    setenv("LOCAL_RANK", "2", 1);
    CHECK_EQ(hgrid_default_device(), 2);
    unsetenv("RANK");
    unsetenv("SLURM_PROCID");
    CHECK_EQ(hgrid_launcher_rank(), -1);
    setenv("SLURM_PROCID", "11", 1);
    CHECK_EQ(hgrid_launcher_rank(), 11);
    setenv("RANK", "x", 1);
    CHECK_EQ(hgrid_launcher_rank(), 11);
}

static void send_release(fake_gridd *g, const char *reason, Hgrid__Outcome outcome)
{
    Hgrid__Release rel = HGRID__RELEASE__INIT;
    rel.reason = (char *)reason;
    rel.outcome = outcome;
    Hgrid__Envelope out;
    wire_envelope_init(&out);
    out.msg_case = HGRID__ENVELOPE__MSG_RELEASE;
    out.release = &rel;
    fake_send(g, &out);
}

// The end of a job: a heartbeat without a loss, Done with the generation
// and step, heartbeats while waiting for the end, the outcome of Release;
// Failure with its reason and retry.
static void test_job_end(fake_gridd *g)
{
    assign_ref ref;
    plan_of(&ref, 2);
    hgrid_worker *w = join(g, 11);
    built_assignment b;
    build(&b, &ref, 11, 3, NULL);
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_OK);
    CHECK_EQ(hgrid_done(w, 9), HGRID_ERR_STATE); // not Ready yet
    CHECK_EQ(hgrid_ready(w), HGRID_OK);
    CHECK_EQ(hgrid_heartbeat(w, 9, HGRID_NO_LOSS, 50.0f), HGRID_OK);
    CHECK_EQ(hgrid_wait_end(w, 50, 10), HGRID_ERR_STATE); // before hgrid_done
    CHECK_EQ(hgrid_done(w, 9), HGRID_OK);
    Hgrid__Envelope *env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_READY, "ready");
    wire_free_envelope(env);
    env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HEARTBEAT && env->heartbeat->no_loss &&
              env->heartbeat->loss == 0 && env->heartbeat->throughput == 50.0f,
          "a heartbeat without a loss says so");
    wire_free_envelope(env);
    env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_DONE && env->done->generation == 3 &&
              env->done->step == 9, "Done(generation 3, step 9)");
    wire_free_envelope(env);
    CHECK_EQ(hgrid_wait_end(w, 20, 150), HGRID_ERR_TIMEOUT);
    int beats = 0;
    char err[256];
    while ((env = wire_recv(g->fd, WIRE_DEFAULT_MAX_FRAME, 100, err, sizeof err))) {
        beats += env->msg_case == HGRID__ENVELOPE__MSG_HEARTBEAT && env->heartbeat->step == 9 &&
                 env->heartbeat->no_loss;
        wire_free_envelope(env);
    }
    CHECK(beats >= 3, "waiting for the end, the last progress is repeated (%d beats)", beats);
    CHECK_EQ(hgrid_job_outcome(w), HGRID_OUTCOME_NONE);
    send_release(g, "every rank finished its training (12 ranks)", HGRID__OUTCOME__OUTCOME_FINISHED);
    CHECK_EQ(hgrid_wait_end(w, 20, 2000), HGRID_RELEASED);
    CHECK_EQ(hgrid_job_outcome(w), HGRID_OUTCOME_FINISHED);
    part(w, g);

    w = join(g, 11);
    build(&b, &ref, 11, 4, NULL);
    send_assignment(g, &b);
    CHECK_EQ(hgrid_wait_assignment(w, 2000), HGRID_OK);
    CHECK_EQ(hgrid_report_failure(w, "checkpoint missing", false), HGRID_OK);
    env = fake_recv(g);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_FAILURE && env->failure->generation == 4 &&
              !strcmp(env->failure->reason, "checkpoint missing") && !env->failure->retry,
          "Failure(generation 4, reason, no retry)");
    wire_free_envelope(env);
    send_release(g, "rank 11 (node-a/3) failed: checkpoint missing", HGRID__OUTCOME__OUTCOME_FAILED);
    usleep(50000);
    CHECK_EQ(hgrid_poll(w), HGRID_RELEASED);
    CHECK_EQ(hgrid_job_outcome(w), HGRID_OUTCOME_FAILED);
    part(w, g);
}

// Coordinator addresses: the port defaults to 7420 (hgrid-worker
// --coordinator HOST); malformed ones are refused.
static void test_split_coordinator(void)
{
    static const struct {
        const char *addr, *host, *port;
    } ok[] = {{"head:7421", "head", "7421"}, {"head", "head", "7420"},
              {"10.0.0.1", "10.0.0.1", "7420"}, {"[::1]:9", "::1", "9"},
              {"[fe80::1]", "fe80::1", "7420"}, {"fe80::1", "fe80::1", "7420"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char host[64] = "", port[8] = "";
        int rc = hgrid_split_coordinator(ok[i].addr, host, sizeof host, port, sizeof port);
        CHECK(rc == 0 && !strcmp(host, ok[i].host) && !strcmp(port, ok[i].port),
              "%s -> %s %s (rc %d)", ok[i].addr, host, port, rc);
    }
    static const char *const bad[] = {"", "head:", ":7420", "head:0", "head:65536", "head:x",
                                      "[::1", "[::1]x", "[]:7420"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64], port[8];
        CHECK(hgrid_split_coordinator(bad[i], host, sizeof host, port, sizeof port) == -1,
              "'%s' is refused", bad[i]);
    }
    char err[256];
    CHECK(hgrid_connect_wait("head:0", 5, err, sizeof err) == NULL && strstr(err, "is not HOST"),
          "a malformed address fails at once: %s", err);
}

int main(void)
{
    fake_gridd g;
    fake_listen(&g);
    test_member_accessors(&g);
    test_colocated(&g);
    test_leader_mints(&g, true);
    test_leader_mints(&g, false);
    test_mismatch(&g);
    test_mint_mid_generation(&g);
    test_mint_flood(&g);
    test_refused_and_lost(&g);
    test_reconnect_running(&g);
    test_reconnect_waiting(&g);
    test_hello_needs_job_and_token(&g);
    test_assignment_only(&g);
    test_defaults();
    test_split_coordinator();
    test_job_end(&g);
    close(g.listen_fd);
    return check_summary("test_client_lib");
}
