/* Housekeeping the server does on its own, at start-up, on SIGHUP and once a minute:
 * partial uploads whose token expired go (at start-up also partial files a crash left without
 * resumption state), files older than max_days go with their ledger rows, and at start-up the
 * ledger and the storage directory are reconciled (rows without files, files without rows).
 * Runs on the loop thread: between start-up checks it touches a handful of files. */
#ifndef HU_MAINTENANCE_H
#define HU_MAINTENANCE_H

#include "server.h"

#define HU_MAINTENANCE_INTERVAL_MS 60000

void hu_maintenance_run(hu_server *srv, int at_startup);

#endif
