#include "maintenance.h"

#include <stdio.h>
#include <time.h>

#include "upload.h"

static int key_busy(const char *key, void *ctx) { return hu_upload_key_busy(ctx, key); }

void hu_maintenance_run(hu_server *srv, int at_startup) {
    const hu_storage *st = &srv->settings->storage;
    int n = hu_storage_sweep_partials(st, (int64_t)time(NULL), at_startup, key_busy, srv);
    if (n > 0)
        fprintf(stderr, "hmac-upload-server: removed %d %s partial upload(s)\n", n,
                at_startup ? "expired or orphaned" : "expired");
}
