// After an Abort: which groups without a replaced rank are still whole
// (docs/DESIGN.md, "Partial rebuild"). Every survivor that counts its
// operations (Hello.counts_ops) reports, once its training thread can
// issue no more, what it issued on each group in the aborted generation:
// collectives, and per peer the point-to-point sends and receives. A
// group is whole when every member issued the same collectives and every
// send has its receive: whatever is in flight on it completes. Otherwise
// a member left it with an operation unmatched (it escaped the step
// first), the members still in that operation wait forever, and the group
// is broken: gridd has its members abort it and the next generation
// re-creates it. Pure code over the mint plan.
#ifndef HGRID_DAEMON_SETTLE_H
#define HGRID_DAEMON_SETTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/mint.h"

#define SETTLE_MAX_POSITIONS MINT_MAX_PER_RANK // a rank's groups (two modules when colocated)

// One of a rank's groups, by its place in the rank's Assignment (its first
// module's groups, then a colocated rank's second module's).
typedef struct {
    int id;   // its communicator's id; -1: a one-rank group
    int size; // members
    int rank_in_group;
} settle_position;

typedef struct {
    int peer; // member index in the group
    uint64_t sent, received;
} settle_peer;

// What a rank issued on the group at `position`.
typedef struct {
    int position;
    uint64_t collectives;
    const settle_peer *peers;
    int num_peers;
} settle_group;

typedef struct {
    int id, src, dst; // a send from member src to member dst of id
    uint64_t balance; // sends minus receives (mod 2^64: zero when they match)
} settle_pair;

typedef struct {
    int world_size, num_ids;
    uint8_t *expected;     // per rank: counts its operations, a report is awaited
    uint8_t *reported;     // per rank
    uint64_t *collectives; // per id: the first report's count
    uint8_t *counted;      // per id: a report gave it
    uint8_t *mismatch;     // per id: two reports disagree on the collectives
    uint8_t *broken;       // per id, after settle_judge
    settle_pair *pairs;
    size_t num_pairs, cap_pairs;
    int awaited; // expected ranks not yet reported
} settle_state;

int settle_init(settle_state *s, const mint_plan *mp);
void settle_free(settle_state *s);
// A new round: no report awaited, nothing recorded.
void settle_begin(settle_state *s);
// rank counts its operations: its report is awaited.
void settle_expect(settle_state *s, int rank);
// rank is gone (replaced): no report awaited from it any more.
void settle_forget(settle_state *s, int rank);
// rank's groups by position; returns how many.
int settle_positions(const mint_plan *mp, int rank, settle_position out[SETTLE_MAX_POSITIONS]);
// Records rank's report: 0; 1 when none was awaited from rank (ignored);
// -1 with the reason in err for a malformed one (nothing recorded, still
// awaited).
int settle_report(settle_state *s, const mint_plan *mp, int rank, const settle_group *groups,
                  int n, char *err, size_t errlen);
// The verdict, into s->broken: an id is broken when it holds a replaced
// rank (replaced: per rank) or an expected rank that did not report, or,
// when every member reported, their counts do not match. An id with a
// member that does not count its operations is judged by replaced ranks
// only. members: scratch of world_size. Returns how many ids are broken.
int settle_judge(settle_state *s, const mint_plan *mp, const uint8_t *replaced, int *members);

#endif
