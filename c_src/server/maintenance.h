/* Housekeeping the server does on its own, at start-up, on SIGHUP and once a minute:
 * partial uploads whose token expired go (unless a request of any server is writing them),
 * files older than max_days go with their ledger rows, and at start-up what a crash left is
 * cleared: partial files without resumption state, stray state files, records without their
 * file, and the ledger reconciled with the storage directory (rows without files go, files
 * without rows are adopted). Other servers may share the storage and the ledger, so the
 * start-up checks run on one server at a time (the ledger's sweep lock) and take only entries
 * left alone for longer than any live server leaves its work in progress (maintenance.c).
 * Runs on the loop thread: between start-up checks it touches a handful of files. */
#ifndef HU_MAINTENANCE_H
#define HU_MAINTENANCE_H

#include "server.h"

#define HU_MAINTENANCE_INTERVAL_MS 60000

void hu_maintenance_run(hu_server *srv, int at_startup);

#endif
