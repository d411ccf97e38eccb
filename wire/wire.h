// Wire format: 4-byte big-endian length + one protobuf Envelope per frame.
// Framing (incremental reader, packing), blocking socket helpers for the
// command-line clients, and the Layout <-> hg_layout_spec conversion.
#ifndef HGRID_WIRE_H
#define HGRID_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout/layout.h"
#include "proto/hgrid.pb-c.h"

#define WIRE_HEADER_BYTES 4
#define WIRE_DEFAULT_MAX_FRAME (1u << 20)
#define WIRE_DEFAULT_PORT 7420
// Where workers find their host's hgrid-agent unless HGRID_AGENT_SOCKET says.
#define WIRE_DEFAULT_AGENT_SOCKET "/run/hgrid/agent.sock"

// ---- job names (hgridctl submit and gridd's submit handler)
#define WIRE_JOB_NAME_MAX 64
#define WIRE_JOB_NAME_RULE \
    "job names are 1-64 bytes of letters, digits, '.', '_' and '-', not starting with '-'"
// Whether name's len bytes (len: the name's full length, so that a NUL
// byte inside counts against it) follow WIRE_JOB_NAME_RULE.
bool wire_job_name_ok(const char *name, size_t len);

// ---- framing
// Called once per complete frame body; return non-zero to stop feeding
// (e.g. the connection is being closed).
typedef int (*wire_frame_fn)(void *ctx, const uint8_t *body, uint32_t len);

// Accumulates a byte stream into frames. The body buffer is allocated only
// after the length passed the max_frame check, and only when a frame
// arrives split across reads.
typedef struct {
    uint32_t max_frame;
    uint8_t header[WIRE_HEADER_BYTES];
    uint32_t header_have;
    uint8_t *body; // partial frame, or NULL
    uint32_t body_len, body_have;
} wire_reader;

void wire_reader_init(wire_reader *r, uint32_t max_frame);
void wire_reader_free(wire_reader *r);
// Delivers every complete frame in data. Returns 0; 1 if on_frame stopped
// it; -1 with a one-line reason in err for an oversized frame.
int wire_reader_feed(wire_reader *r, const uint8_t *data, size_t len, wire_frame_fn on_frame,
                     void *ctx, char *err, size_t errlen);
// True while a frame is partly received (for "truncated frame" at EOF).
bool wire_reader_partial(const wire_reader *r);

// Sets the protocol version; every Envelope sent goes through this.
void wire_envelope_init(Hgrid__Envelope *env);
// Packs env into a new malloc'd frame (header + body). Returns its length,
// or 0 if allocation failed or the packed size differed from the promise.
size_t wire_pack(const Hgrid__Envelope *env, uint8_t **frame);
// Packs env into buf (cap bytes); returns the frame's length, or 0 if it
// does not fit or packing failed.
size_t wire_pack_into(const Hgrid__Envelope *env, uint8_t *buf, size_t cap);
// Unpacks a frame body; NULL if undecodable, if a string holds a NUL byte
// (which protobuf-c would silently cut) or if decoding would allocate more
// than WIRE_UNPACK_FACTOR x len + WIRE_UNPACK_BASE bytes (legitimate
// messages need under 8x). Free with wire_free_envelope.
#define WIRE_UNPACK_FACTOR 16
#define WIRE_UNPACK_BASE (64u << 10)
Hgrid__Envelope *wire_unpack(const uint8_t *body, size_t len);
void wire_free_envelope(Hgrid__Envelope *env);
// Makes a peer's text safe for a terminal or a log, in place: C0 and C1
// controls, DEL and non-ASCII bytes become '?'. The _envelope form does
// every string field of a received message (hgridctl's replies, gridd's
// messages to a worker) before anything prints them.
void wire_printable(char *s);
void wire_printable_envelope(Hgrid__Envelope *env);
// A one-line reason if env's version or content is unusable, else NULL.
const char *wire_check_version(const Hgrid__Envelope *env, char *buf, size_t buflen);

// ---- host links (wire/host.c)
// Packs the i-th worker's Assignment of a HostAssignment as the frame
// (header included, malloc'd into *frame) that worker receives: layout and
// job filled in, each group's id_ref resolved to its id. Returns its
// length, or 0 with a reason in err.
size_t wire_host_assignment_frame(const Hgrid__HostAssignment *ha, size_t i, const char *job,
                                  uint8_t **frame, char *err, size_t errlen);

// ---- Assignments packed by hand (wire/assignment_pack.c): the bytes
// protobuf-c packs, for messages without unknown fields, faster.
// Writes v as a varint at p; returns its length (at most 10).
size_t wire_put_varint(uint8_t *p, uint64_t v);
// hgrid__assignment__get_packed_size and hgrid__assignment__pack.
size_t wire_assignment_size(const Hgrid__Assignment *a);
size_t wire_assignment_pack(const Hgrid__Assignment *a, uint8_t *out);
// False when the schema has fields the hand packing does not know (it
// then calls protobuf-c).
bool wire_assignment_hand_packed(void);
// A HostAssignment from its parts, each Assignment already packed: the
// frame (header included) of Envelope{version, host_assignment}.
typedef struct {
    uint64_t generation;
    const uint8_t *layout; // the packed Layout (layout_len bytes), or NULL: none
    size_t layout_len;
    const uint32_t *devices;        // n devices, for the n Assignments
    const uint8_t *assignments;     // packed, back to back
    const size_t *assignment_lens;  // n
    size_t n;
    const ProtobufCBinaryData *ids; // n_ids
    size_t n_ids;
} wire_host_parts;
size_t wire_host_frame_size(const wire_host_parts *h);
// Writes the frame (wire_host_frame_size bytes) and returns its length, 0
// if over 4 GiB.
size_t wire_host_frame_pack(const wire_host_parts *h, uint8_t *frame);

// ---- Relays (wire/relay.c): the frames a host link gathers for its next
// Relay, frame i (len[i] bytes at offsets[i]) for devices[i]; the same
// batching on the agent's side and on gridd's.
typedef struct {
    uint32_t *devices;
    size_t *offsets, *lens;
    int num;
    size_t cap; // of devices, offsets and lens
    uint8_t *bytes;
    size_t used, bytes_cap;
} wire_relay_batch;
// Room for one more frame of len bytes for device: where to write them, or
// NULL out of memory (the batch unchanged).
uint8_t *wire_relay_add(wire_relay_batch *b, uint32_t device, size_t len);
// The batch as *relay (pointing into b, which must outlive it; one frame
// for every device when all are the same bytes). Returns the frames array
// the caller frees after sending, or NULL out of memory.
ProtobufCBinaryData *wire_relay_message(const wire_relay_batch *b, Hgrid__Relay *relay);
// Empties the batch, keeping its buffers / releasing them.
void wire_relay_clear(wire_relay_batch *b);
void wire_relay_free(wire_relay_batch *b);
// A received Relay's frame for its i-th device; NULL when i is past its
// devices or it has neither one frame nor one per device.
const ProtobufCBinaryData *wire_relay_frame(const Hgrid__Relay *r, size_t i);

// ---- blocking I/O for clients (hgridctl, hgrid-worker)
// Sends one Envelope; returns 0 or -1 (errno set).
int wire_send(int fd, const Hgrid__Envelope *env);
// Receives one Envelope within timeout_ms (-1: no limit). Returns NULL with
// a one-line reason in err on EOF, timeout, oversized or undecodable frame.
Hgrid__Envelope *wire_recv(int fd, uint32_t max_frame, int timeout_ms, char *err, size_t errlen);
// Splits "HOST:PORT" (or "[V6]:PORT") into host and port; -1 if malformed.
int wire_split_host_port(const char *addr, char *host, size_t hostlen, const char **port);
// Connects to "HOST:PORT" (TCP) or, when addr contains a '/', a Unix socket.
// Returns the fd or -1 with a one-line reason in err.
int wire_connect(const char *addr, char *err, size_t errlen);
// A worker's TCP connection to gridd notices a peer host that vanished
// without closing it (power loss, a cut link): data unacknowledged for
// WIRE_PEER_TIMEOUT_MS, or an idle link whose keepalive probes go
// unanswered for about as long, fails the connection. No-op on other sockets.
#define WIRE_PEER_TIMEOUT_MS 10000
void wire_watch_peer(int fd);
// gridd's control socket when --control/--socket is not given: $HGRID_CONTROL,
// else /run/hgrid/gridd.sock for root, else $XDG_RUNTIME_DIR/hgrid/gridd.sock,
// else /tmp/hgrid-$UID/gridd.sock.
void wire_default_control_path(char *buf, size_t buflen);

// ---- layouts
// A Layout message with the sub-messages it links to (caller-owned; not
// to be copied once filled: layout points into it). The encoders' names
// point into the spec, which must outlive it.
typedef struct {
    Hgrid__Layout layout;
    Hgrid__ModelConfig model;
    Hgrid__LlmOffset llm_offset;
    Hgrid__EncoderGrid encoders[HG_MAX_ENCODERS];
    Hgrid__EncoderGrid *encoder_ptrs[HG_MAX_ENCODERS];
} wire_layout;
void wire_layout_from_spec(const hg_layout_spec *spec, wire_layout *out);
// Converts a received Layout; -1 with a reason if it has no model or a
// value is out of range.
int wire_layout_to_spec(const Hgrid__Layout *layout, hg_layout_spec *spec, char *err,
                        size_t errlen);

#endif
