// A job's workers: who joined from which (host, device), who holds which
// rank, and the sticky (host, device) -> rank map once ranks are assigned.
// Pure bookkeeping: no I/O, O(1) per join and leave.
#ifndef HGRID_DAEMON_ROSTER_H
#define HGRID_DAEMON_ROSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/table.h"
#include "layout/layout.h"

#define ROSTER_MAX_HOST 255 // bytes in a host name
// Host names a roster holds at most: the hosts no slot refers to any more
// (workers that left, ranks taken over from a new host) are dropped when
// the table reaches this, so join/leave cycles cannot grow it.
#define ROSTER_MAX_HOSTS(world_size) (2 * (world_size) + 16)

typedef enum { SLOT_EMPTY, SLOT_JOINED, SLOT_ASSIGNED, SLOT_READY, SLOT_LOST } slot_state;

typedef struct {
    int host;      // host number (roster_host_name); -1 while empty
    int device;    // local GPU index
    int requested; // rank asked for, until ranks are assigned; else -1
    slot_state state;
    bool mint_pending;       // owes a MintReply for the current generation
    void *conn;              // the live connection, NULL when none
    int64_t last_heartbeat;  // monotonic ms of the last Heartbeat; 0: none yet
    uint64_t step;
    float loss, throughput, step_time_s;
    uint8_t *self_test;      // the worker's last SelfTestReport, packed; NULL: none
    size_t self_test_len;
    uint64_t self_test_gen;  // that report's generation (0: none), kept or not
    uint32_t self_test_failed; // its checks that failed (hgridctl status's summary)
} roster_slot;

typedef struct {
    int world_size;
    bool assigned; // ranks are fixed: slot i holds rank i
    int live;      // slots with a connection
    roster_slot *slots;
    char **hosts;  // host names in order of first join
    int num_hosts, hosts_cap;
    table host_index;   // hash(name) -> host number
    table device_index; // (host, device) -> slot
    int *requested_by;  // before assignment: slot that asked for rank r, or -1
    int *free_slots;    // before assignment: empty slots (a stack)
    int num_free;
    uint64_t map_version; // bumped whenever the sticky map changes
    int lost_hint;        // after assignment: every slot below it is live
} roster;

typedef enum {
    ROSTER_OK,
    ROSTER_DUPLICATE,    // (host, device) already live
    ROSTER_RANK_REFUSED, // requested rank out of range or held
    ROSTER_FULL,
    ROSTER_NOMEM
} roster_status;

int roster_init(roster *r, int world_size);
void roster_free(roster *r);
// Adds a live worker; on ROSTER_OK *slot is its slot. Otherwise err says
// why in one line.
roster_status roster_join(roster *r, const char *host, int device, int requested, int *slot,
                          char *err, size_t errlen);
// The worker in slot is gone: before assignment its slot frees up; after,
// it is lost and keeps its rank for a rejoin.
void roster_leave(roster *r, int slot);
bool roster_full(const roster *r);
// Assigns ranks once every slot is live (assign.h), reorders the slots by
// rank and fixes the sticky map. Returns 0 or -1 if out of memory.
int roster_assign(roster *r, const hg_plan *plan);
const char *roster_host_name(const roster *r, int host);
// Rebuilds an assigned roster (every rank lost) from saved state: hosts[h]
// names host h; rank i was (rank_host[i], rank_device[i]). Returns 0, -1 if
// out of memory, or ROSTER_RESTORE_TWICE if a host is named twice or a
// (host, device) given two ranks (the roster is then freed).
#define ROSTER_RESTORE_TWICE (-2)
int roster_restore(roster *r, int world_size, char *const *hosts, int num_hosts,
                   const int *rank_host, const int *rank_device);

#endif
