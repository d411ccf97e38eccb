// The job's key-value store, served to torch.distributed (hgrid.torch's
// Store): set, get, add, compare_set, wait, check, delete, num_keys over a
// connection opened with the job's token; bounded in keys and bytes per
// job; it lives and dies with the job (docs/PYTORCH.md).
#ifndef HGRID_DAEMON_STORE_H
#define HGRID_DAEMON_STORE_H

#include "daemon/conn.h"

#define GRIDD_STORE_MAX_KEYS 65536
#define GRIDD_STORE_MAX_BYTES (64u << 20) // keys and values of one job

typedef struct gridd_store gridd_store;
typedef struct store_client store_client;

// A StoreOpen or StoreRequest on a worker connection.
void store_handle(conn *c, const Hgrid__Envelope *env);
// c is closing: forget its parked request.
void store_conn_gone(conn *c);
// The job is going: its store connections get an Error, its data is freed.
void store_job_gone(job *j);

#endif
