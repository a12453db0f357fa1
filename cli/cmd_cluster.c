/* cmd_cluster.c - ferryctl cluster ... */
#include "cli/commands.h"
#include "cli/table.h"
#include "common/wire.h"

#include <string.h>

static void render_members(FILE *out, const char *role, const msgpack_object *list, table_t *t)
{
    if (!list || list->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *m = &list->via.array.ptr[i];
        char name[80], id[32], match[32], active[8];
        table_add(t, table_cell_or(m, "name", name, sizeof(name)), table_cell_or(m, "id", id, sizeof(id)), role,
                  table_cell_or(m, "match_index", match, sizeof(match)),
                  table_cell_or(m, "active", active, sizeof(active)));
    }
}

static void render_status(const msgpack_object *r, FILE *out)
{
    char buf[128];
    fprintf(out, "%-14s %s\n", "self", table_cell_or(r, "self", buf, sizeof(buf)));
    fprintf(out, "%-14s %s\n", "role", table_cell_or(r, "role", buf, sizeof(buf)));
    fprintf(out, "%-14s %s\n", "leader", table_cell_or(r, "leader", buf, sizeof(buf)));
    fprintf(out, "%-14s %s\n", "term", table_cell_or(r, "term", buf, sizeof(buf)));
    fprintf(out, "%-14s %s\n", "commit index", table_cell_or(r, "commit_index", buf, sizeof(buf)));
    fprintf(out, "%-14s %s\n", "applied index", table_cell_or(r, "applied_index", buf, sizeof(buf)));
    fprintf(out, "%-14s %s\n", "state hash", table_cell_or(r, "state_hash", buf, sizeof(buf)));
    fprintf(out, "\n");
    table_t *t = table_new(5, "MEMBER", "ID", "ROLE", "MATCH", "ACTIVE");
    render_members(out, "voter", wire_map_find(r, "voters"), t);
    render_members(out, "learner", wire_map_find(r, "learners"), t);
    table_print(t, out);
    table_destroy(&t);
}

static int parse_transfer(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    if (argc != 1 || argv[0][0] == '-') {
        snprintf(err, errlen, "needs exactly one HOST");
        return -1;
    }
    msgpack_pack_map(args, 1);
    wire_pack_kv_str(args, "host", argv[0]);
    return 0;
}

static void render_transfer(const msgpack_object *r, FILE *out)
{
    char leader[80];
    fprintf(out, "leader is now %s\n", table_cell_or(r, "leader", leader, sizeof(leader)));
}

static int parse_set(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    if (argc != 2) {
        snprintf(err, errlen, "needs KEY and VALUE (an empty VALUE clears the setting)");
        return -1;
    }
    msgpack_pack_map(args, 2);
    wire_pack_kv_str(args, "key", argv[0]);
    wire_pack_kv_str(args, "value", argv[1]);
    return 0;
}

static void render_write(const msgpack_object *r, FILE *out)
{
    char message[200], index[32];
    fprintf(out, "%s (committed at index %s)\n", table_cell_or(r, "message", message, sizeof(message)),
            table_cell_or(r, "index", index, sizeof(index)));
}

const cli_command_t cli_cluster_commands[] = {
    { "cluster set", "cluster.set", "KEY VALUE", "set a cluster-wide setting (replicated through Raft)", parse_set,
      render_write, NULL },
    { "cluster status", "cluster.status", "", "leader, term, commit and applied index, members, state hash", NULL,
      render_status, NULL },
    { "cluster transfer-leader", "cluster.transfer-leader", "HOST", "hand leadership to HOST", parse_transfer,
      render_transfer, NULL },
    { NULL },
};
