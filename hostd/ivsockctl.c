// SPDX-License-Identifier: MIT
/*
 * ivsockctl: asks ivsockd over its control socket and prints aligned tables
 * (or the daemon's JSON with --json). A table of subcommands, one function
 * each. Exit codes: 0 ok, 1 not found / daemon error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ctl_proto.h"

#define EXIT_NOTFOUND 1
#define EXIT_USAGE    2

static const char *sock_path = "/run/ivsock/control.sock";
static int opt_json;
static const char *opt_size; /* channel promote --size */

/* ---------------- transport ---------------- */

static int full_io(int fd, void *buf, size_t len, int wr)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = wr ? send(fd, (char *)buf + off, len - off, MSG_NOSIGNAL)
			       : recv(fd, (char *)buf + off, len - off, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		off += (size_t)n;
	}
	return 0;
}

/* One request; *reply is the parsed JSON. @return daemon status or -errno
 * for transport problems (message printed). */
static int request(uint16_t type, const char *arg, json_t **reply)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ivsock_msg_hdr h;
	size_t alen = arg ? strlen(arg) : 0;
	json_error_t jerr;
	char *buf = NULL;
	int s, rc;

	*reply = NULL;
	if (strlen(sock_path) >= sizeof(sa.sun_path) || alen > IVSOCK_CTL_REQ_MAX) {
		fprintf(stderr, "ivsockctl: argument or socket path too long\n");
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, sock_path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		fprintf(stderr, "ivsockctl: cannot reach ivsockd at %s: %s\n", sock_path,
			strerror(-rc));
		if (s >= 0)
			close(s);
		return rc;
	}
	ivsock_msg_init(&h, type, (uint32_t)alen, (uint32_t)getpid());
	rc = full_io(s, &h, sizeof(h), 1);
	if (rc == 0 && alen)
		rc = full_io(s, (void *)arg, alen, 1);
	if (rc == 0)
		rc = full_io(s, &h, sizeof(h), 0);
	if (rc == 0 && (ivsock_ctl_hdr_check(&h, IVSOCK_CTL_REPLY_MAX) < 0 || h.type != type ||
			h.seq != (uint32_t)getpid()))
		rc = -EPROTO;
	if (rc == 0) {
		buf = malloc(h.len + 1);
		rc = buf ? full_io(s, buf, h.len, 0) : -ENOMEM;
	}
	close(s);
	if (rc < 0) {
		fprintf(stderr, "ivsockctl: talking to ivsockd at %s: %s\n", sock_path,
			strerror(-rc));
		free(buf);
		return rc;
	}
	buf[h.len] = '\0';
	*reply = h.len ? json_loads(buf, 0, &jerr) : NULL;
	free(buf);
	if (h.len && !*reply) {
		fprintf(stderr, "ivsockctl: bad JSON from ivsockd: %s\n", jerr.text);
		return -EPROTO;
	}
	return h.status;
}

/* ---------------- aligned tables ---------------- */

#define TBL_COLS 12

struct table {
	size_t ncols, nrows, cap;
	char **cells;             /* nrows * ncols, row 0 = header */
	size_t width[TBL_COLS];
};

static void tbl_row(struct table *t, const char *const *cols)
{
	size_t i;

	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (!t->cells)
			abort();
	}
	for (i = 0; i < t->ncols; i++) {
		char *c = strdup(cols[i] ? cols[i] : "-"), *p;
		size_t w;

		if (!c)
			abort();
		/* Names come from VMs: no terminal control sequences in a table
		 * (--json prints them escaped). */
		for (p = c; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		w = strlen(c);
		t->cells[t->nrows * t->ncols + i] = c;
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
}

static void tbl_print(struct table *t)
{
	size_t r, i;

	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			const char *c = t->cells[r * t->ncols + i];

			if (i + 1 == t->ncols)
				printf("%s\n", c);
			else
				printf("%-*s  ", (int)t->width[i], c);
			free(t->cells[r * t->ncols + i]);
		}
	}
	free(t->cells);
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

static char *jnum(char *buf, size_t len, json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, len, "-");
	return buf;
}

static void join_array(char *buf, size_t len, json_t *arr)
{
	size_t i, off = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);

		if (s && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", s);
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

static int print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (!s)
		return EXIT_NOTFOUND;
	puts(s);
	free(s);
	return 0;
}

static int finish(int status, json_t *j, const char *what)
{
	if (status < 0) {
		if (j && json_object_get(j, "error") && status != -ENOENT)
			fprintf(stderr, "ivsockctl: %s: %s\n", what, jstr(j, "error"));
		else if (status != -ENOENT && status > -4096)
			fprintf(stderr, "ivsockctl: %s: %s\n", what, strerror(-status));
		json_decref(j);
		return EXIT_NOTFOUND;
	}
	return 0;
}

/* ---------------- subcommands ---------------- */

static int cmd_domain_list(int argc, char **argv)
{
	struct table t = { .ncols = 9 };
	json_t *j, *d;
	size_t i;
	int rc;

	(void)argv;
	if (argc != 0)
		return -EXIT_USAGE;
	rc = request(IVSOCK_CTL_DOMAIN_LIST, NULL, &j);
	if (finish(rc, j, "domain list"))
		return EXIT_NOTFOUND;
	if (opt_json) {
		rc = print_json(j);
		json_decref(j);
		return rc;
	}
	tbl_row(&t, (const char *[]){ "DOMAIN", "SOCKET", "REGION", "BACKING", "VECTORS",
				      "ALIVE", "DEAD", "PEERS", "DAEMON-PEER" });
	json_array_foreach(json_object_get(j, "domains"), i, d) {
		char a[32], b[32], c[32], e[32], f[32], g[32];
		json_int_t sz = json_integer_value(json_object_get(d, "region_size"));

		snprintf(a, sizeof(a), "%lldM", (long long)(sz >> 20));
		tbl_row(&t, (const char *[]){ jstr(d, "name"), jstr(d, "socket"), a,
			jstr(d, "backing"), jnum(b, sizeof(b), d, "vectors"),
			jnum(c, sizeof(c), d, "vms_alive"), jnum(e, sizeof(e), d, "vms_dead"),
			jnum(f, sizeof(f), d, "peer_ids_in_use"),
			jnum(g, sizeof(g), d, "daemon_peer_id") });
	}
	tbl_print(&t);
	json_decref(j);
	return 0;
}

static void vm_row(struct table *t, json_t *v)
{
	char p[32], vec[32], addrs[512];

	join_array(addrs, sizeof(addrs), json_object_get(v, "addresses"));
	tbl_row(t, (const char *[]){ jstr(v, "name"), jstr(v, "uuid"),
		jnum(p, sizeof(p), v, "peer_id"), jstr(v, "state"), addrs,
		jnum(vec, sizeof(vec), v, "vectors"), jstr(v, "domain") });
}

static int cmd_vm_list(int argc, char **argv)
{
	struct table t = { .ncols = 7 };
	json_t *j, *v;
	size_t i;
	int rc;

	(void)argv;
	if (argc != 0)
		return -EXIT_USAGE;
	rc = request(IVSOCK_CTL_VM_LIST, NULL, &j);
	if (finish(rc, j, "vm list"))
		return EXIT_NOTFOUND;
	if (opt_json) {
		rc = print_json(j);
		json_decref(j);
		return rc;
	}
	tbl_row(&t, (const char *[]){ "NAME", "UUID", "PEER", "STATE", "ADDRESSES",
				      "VECTORS", "DOMAIN" });
	json_array_foreach(json_object_get(j, "vms"), i, v)
		vm_row(&t, v);
	tbl_print(&t);
	json_decref(j);
	return 0;
}

static int cmd_vm_show(int argc, char **argv)
{
	json_t *j, *v;
	const char *k;
	int rc;

	if (argc != 1 || !argv[0][0])
		return -EXIT_USAGE;
	rc = request(IVSOCK_CTL_VM_SHOW, argv[0], &j);
	if (rc == -ENOENT) {
		fprintf(stderr, "ivsockctl: no VM named '%s'\n", argv[0]);
		json_decref(j);
		return EXIT_NOTFOUND;
	}
	if (finish(rc, j, "vm show"))
		return EXIT_NOTFOUND;
	if (opt_json) {
		rc = print_json(j);
		json_decref(j);
		return rc;
	}
	json_object_foreach(json_object_get(j, "vm"), k, v) {
		char buf[512];

		if (json_is_array(v))
			join_array(buf, sizeof(buf), v);
		else if (json_is_string(v))
			snprintf(buf, sizeof(buf), "%s", json_string_value(v));
		else if (json_is_integer(v))
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		else if (json_is_boolean(v))
			snprintf(buf, sizeof(buf), "%s", json_is_true(v) ? "yes" : "no");
		else
			snprintf(buf, sizeof(buf), "-");
		printf("%-18s %s\n", k, buf);
	}
	json_decref(j);
	return 0;
}

static void end_desc(char *buf, size_t len, json_t *e)
{
	if (json_integer_value(json_object_get(e, "vm_index")) < 0 &&
	    !strcmp(jstr(e, "state"), "unknown")) {
		snprintf(buf, len, "-"); /* the acceptor of a connection on TCP */
		return;
	}
	snprintf(buf, len, "%s/p%lld/v%lld", jstr(e, "vm"),
		 (long long)json_integer_value(json_object_get(e, "peer_id")),
		 (long long)json_integer_value(json_object_get(e, "vector")));
}

/* Every page of the channel list, merged into one {"channels": [...]}. */
static int request_channels(json_t **out)
{
	json_t *all = NULL, *page, *next;
	char cursor[32] = "";
	int rc;

	for (;;) {
		rc = request(IVSOCK_CTL_CHANNELS, cursor, &page);
		if (rc != 0 || !page) {
			json_decref(all);
			*out = page;
			return rc;
		}
		next = json_object_get(page, "next");
		if (!all) {
			all = json_incref(page);
		} else {
			json_array_extend(json_object_get(all, "channels"),
					  json_object_get(page, "channels"));
		}
		if (!json_is_integer(next) || json_integer_value(next) <= 0 ||
		    json_array_size(json_object_get(page, "channels")) == 0) {
			json_decref(page);
			break;
		}
		snprintf(cursor, sizeof(cursor), "%lld", (long long)json_integer_value(next));
		json_decref(page);
	}
	json_object_del(all, "next");
	*out = all;
	return 0;
}

/* An end's tx bytes on rings and on TCP (its "paths" object). */
static void path_bytes(char *ring, char *tcp, size_t len, json_t *end)
{
	json_t *p = json_object_get(end, "paths");

	if (!json_is_object(p)) { /* a connection on TCP: the kernel counts */
		snprintf(ring, len, "-");
		snprintf(tcp, len, "-");
		return;
	}
	snprintf(ring, len, "%lld", (long long)json_integer_value(
			json_object_get(json_object_get(p, "ring"), "tx_bytes")));
	snprintf(tcp, len, "%lld", (long long)json_integer_value(
			json_object_get(json_object_get(p, "tcp"), "tx_bytes")));
}

static int cmd_channels(int argc, char **argv)
{
	struct table t = { .ncols = 10 };
	json_t *j, *c;
	size_t i;
	int rc;

	(void)argv;
	if (argc != 0)
		return -EXIT_USAGE;
	rc = request_channels(&j);
	if (finish(rc, j, "channels"))
		return EXIT_NOTFOUND;
	if (opt_json) {
		rc = print_json(j);
		json_decref(j);
		return rc;
	}
	tbl_row(&t, (const char *[]){ "DOMAIN", "CHAN", "STATE", "RING", "CONNECTOR",
				      "ACCEPTOR", "TUPLE", "PATH", "C-TX", "C-TCP", "A-TX", "A-TCP" });
	json_array_foreach(json_object_get(j, "channels"), i, c) {
		json_t *e0 = json_array_get(json_object_get(c, "ends"), 0);
		json_t *e1 = json_array_get(json_object_get(c, "ends"), 1);
		json_t *tu = json_object_get(c, "tuple");
		char idx[16], ring[24], a[128], b[128], tup[200], path[32], t0[32], k0[32], t1[32],
			k1[32];
		long long rs = json_integer_value(json_object_get(c, "ring_size"));

		snprintf(idx, sizeof(idx), "%lld",
			 (long long)json_integer_value(json_object_get(c, "index")));
		if (rs <= 0)
			snprintf(ring, sizeof(ring), "-");
		else if (rs >= 1024 * 1024)
			snprintf(ring, sizeof(ring), "%lldM", rs >> 20);
		else
			snprintf(ring, sizeof(ring), "%lldK", rs >> 10);
		end_desc(a, sizeof(a), e0);
		end_desc(b, sizeof(b), e1);
		snprintf(tup, sizeof(tup), "%s:%lld->%s:%lld", jstr(tu, "src"),
			 (long long)json_integer_value(json_object_get(tu, "sport")),
			 jstr(tu, "dst"),
			 (long long)json_integer_value(json_object_get(tu, "dport")));
		/* where each end's tx is now; its bytes on every ring of the
		 * connection, and on TCP up to its move to this ring */
		snprintf(path, sizeof(path), "%s/%s", jstr(e0, "tx_path"), jstr(e1, "tx_path"));
		path_bytes(t0, k0, sizeof(t0), e0);
		path_bytes(t1, k1, sizeof(t1), e1);
		tbl_row(&t, (const char *[]){ jstr(c, "domain"), idx, jstr(c, "state"), ring,
					      a, b, tup, path, t0, k0, t1, k1 });
	}
	tbl_print(&t);
	json_decref(j);
	return 0;
}

/* A switch request for channel `name` (payload arg): errors as `verb`,
 * then the reply's `key` object in words, or the JSON. */
static int channel_switch(uint16_t type, const char *name, const char *arg, const char *verb,
			  const char *key)
{
	json_t *j, *d;
	int rc = request(type, arg, &j);

	if (rc == -ENOENT) {
		fprintf(stderr, "ivsockctl: no channel '%s'\n", name);
		json_decref(j);
		return EXIT_NOTFOUND;
	}
	if (finish(rc, j, verb))
		return EXIT_NOTFOUND;
	if (opt_json) {
		rc = print_json(j);
		json_decref(j);
		return rc;
	}
	d = json_object_get(j, key);
	printf("channel %s/%lld (gen %lld): ", jstr(d, "domain"),
	       (long long)json_integer_value(json_object_get(d, "index")),
	       (long long)json_integer_value(json_object_get(d, "gen")));
	if (type == IVSOCK_CTL_CHAN_DEMOTE)
		printf("both ends asked to move to TCP\n");
	else if (json_is_true(json_object_get(d, "from_tcp")) &&
		 !json_integer_value(json_object_get(d, "ring_size")))
		printf("on TCP: its connector asked for a ring of its default size\n");
	else if (json_is_true(json_object_get(d, "from_tcp")))
		printf("on TCP: its connector asked for a %lld-byte ring\n",
		       (long long)json_integer_value(json_object_get(d, "ring_size")));
	else
		printf("both ends move to TCP, then to a %lld-byte ring\n",
		       (long long)json_integer_value(json_object_get(d, "ring_size")));
	json_decref(j);
	return 0;
}

static int cmd_channel_demote(int argc, char **argv)
{
	if (argc != 1 || !argv[0][0])
		return -EXIT_USAGE;
	return channel_switch(IVSOCK_CTL_CHAN_DEMOTE, argv[0], argv[0], "channel demote", "demoted");
}

/* A size: bytes, or with K, M (1024-based). @return 0 or -1. */
static int parse_bytes(const char *s, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno || s[0] == '-')
		return -1;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (*end || v == 0 || v > (1ULL << 31))
		return -1;
	*out = v;
	return 0;
}

static int cmd_channel_promote(int argc, char **argv)
{
	unsigned long long size = 0;
	char arg[256];

	if (argc != 1)
		return -EXIT_USAGE;
	if (opt_size && parse_bytes(opt_size, &size) < 0) {
		fprintf(stderr, "ivsockctl: --size: a size in bytes (K, M allowed) expected\n");
		return -EXIT_USAGE;
	}
	if (!argv[0][0] || strchr(argv[0], ' ') ||
	    snprintf(arg, sizeof(arg), "%s %llu", argv[0], size) >= (int)sizeof(arg))
		return -EXIT_USAGE;
	return channel_switch(IVSOCK_CTL_CHAN_PROMOTE, argv[0], arg, "channel promote", "promoted");
}

static const struct {
	const char *group, *verb;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{ "domain", "list", cmd_domain_list, "domain list            trust domains and their regions" },
	{ "vm", "list", cmd_vm_list, "vm list                VMs of every domain" },
	{ "vm", "show", cmd_vm_show, "vm show NAME           one VM in detail" },
	{ "channels", NULL, cmd_channels, "channels               ring channels with their byte counters" },
	{ "channel", "demote", cmd_channel_demote, "channel demote [DOMAIN/]INDEX  move a live connection to TCP (root)" },
	{ "channel", "promote", cmd_channel_promote, "channel promote [DOMAIN/]INDEX [--size N]  move it to another ring (root)" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ivsockctl [-s|--socket PATH] COMMAND [--json]\ncommands:\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].help);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *args[8];
	int nargs = 0, o, i;
	size_t k;

	/* Options may come anywhere ("vm list --json"). */
	while ((o = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock_path = optarg; break;
		case 'j': opt_json = 1; break;
		case 'z': opt_size = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	for (i = optind; i < argc; i++) {
		if (nargs == 8) {
			usage(stderr);
			return EXIT_USAGE;
		}
		args[nargs++] = argv[i];
	}
	if (!nargs) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		int skip = cmds[k].verb ? 2 : 1, rc;

		if (strcmp(args[0], cmds[k].group))
			continue;
		if (cmds[k].verb && (nargs < 2 || strcmp(args[1], cmds[k].verb)))
			continue;
		rc = cmds[k].fn(nargs - skip, args + skip);
		if (rc == -EXIT_USAGE) {
			fprintf(stderr, "ivsockctl: bad arguments for '%s%s%s'\n", cmds[k].group,
				cmds[k].verb ? " " : "", cmds[k].verb ? cmds[k].verb : "");
			usage(stderr);
			return EXIT_USAGE;
		}
		return rc;
	}
	fprintf(stderr, "ivsockctl: unknown command '%s%s%s'\n", args[0],
		nargs > 1 ? " " : "", nargs > 1 ? args[1] : "");
	usage(stderr);
	return EXIT_USAGE;
}
