// SPDX-License-Identifier: MIT
/* Unit tests for ivsockd's parsers: sizes, durations, the --domain quick
 * syntax, ini files, QEMU command lines and the peer ID allocator. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../config.h"
#include "../identify.h"
#include "../peers.h"

static void test_sizes(void **state)
{
	uint64_t v;
	uint32_t ms;

	(void)state;
	assert_int_equal(conf_parse_size("256M", &v), 0);
	assert_int_equal(v, 256ULL << 20);
	assert_int_equal(conf_parse_size("128K", &v), 0);
	assert_int_equal(v, 131072);
	assert_int_equal(conf_parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(conf_parse_size("65536", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(conf_parse_size("12Q", &v), -EINVAL);
	assert_int_equal(conf_parse_size("-1M", &v), -EINVAL);
	assert_int_equal(conf_parse_size("", &v), -EINVAL);
	assert_int_equal(conf_parse_size("99999999999999999999G", &v), -EINVAL);
	assert_int_equal(conf_parse_duration("10s", &ms), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(conf_parse_duration("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(conf_parse_duration("2m", &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(conf_parse_duration("soon", &ms), -EINVAL);
}

static void test_quick_domain(void **state)
{
	struct daemon_conf *c = malloc(sizeof(*c));
	char err[256];

	(void)state;
	conf_defaults(c);
	assert_int_equal(conf_add_quick_domain(c, "t1=/run/x.sock,size=64M,vectors=2,"
					       "allow=a+b,grace=500ms", err, sizeof(err)), 0);
	assert_string_equal(c->domains[0].name, "t1");
	assert_string_equal(c->domains[0].socket, "/run/x.sock");
	assert_int_equal(c->domains[0].region_size, 64ULL << 20);
	assert_int_equal(c->domains[0].vectors, 2);
	assert_int_equal(c->domains[0].grace_ms, 500);
	assert_int_equal(c->domains[0].nallow, 2);
	assert_true(conf_allowed(&c->domains[0], "b"));
	assert_false(conf_allowed(&c->domains[0], "c"));
	assert_int_equal(conf_validate(c, err, sizeof(err)), 0);
	assert_int_equal(conf_add_quick_domain(c, "nosock", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_add_quick_domain(c, "x=/s,bogus=1", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown"));
	assert_int_equal(conf_add_quick_domain(c, "y=/y.sock,size=3M", err, sizeof(err)), 0);
	assert_int_equal(conf_validate(c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "power of two"));
	free(c);
}

static void test_ini(void **state)
{
	struct daemon_conf *c = malloc(sizeof(*c));
	char path[] = "/tmp/test-hostd-conf.XXXXXX", err[256];
	FILE *f;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "[daemon]\ncontrol = /tmp/c.sock\nlog_level = debug\nheartbeat = 50ms\n"
		   "[domain red]\nsocket = /tmp/red.sock\nregion_size = 32M\n"
		   "backing = /dev/shm/red\nvectors = 8\nallow = vm1, vm2\n"
		   "grace_period = 3s\nmax_vms = 8\n");
	fclose(f);
	conf_defaults(c);
	assert_int_equal(conf_load(c, path, err, sizeof(err)), 0);
	assert_string_equal(c->control, "/tmp/c.sock");
	assert_int_equal(c->heartbeat_ms, 50);
	assert_int_equal(c->ndomains, 1);
	assert_string_equal(c->domains[0].backing, "/dev/shm/red");
	assert_int_equal(c->domains[0].vectors, 8);
	assert_int_equal(c->domains[0].max_vms, 8);
	assert_int_equal(c->domains[0].grace_ms, 3000);
	assert_int_equal(c->domains[0].nallow, 2);

	f = fopen(path, "w");
	fprintf(f, "[domain blue]\nvectors = 1000\n");
	fclose(f);
	conf_defaults(c);
	assert_int_equal(conf_load(c, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":2:"));
	assert_non_null(strstr(err, "vectors"));
	unlink(path);
	assert_true(conf_load(c, path, err, sizeof(err)) < 0);
	free(c);
}

static void cmdline(struct client_ident *id, const char *const *argv)
{
	char buf[1024];
	size_t n = 0;

	for (; *argv; argv++) {
		strcpy(buf + n, *argv);
		n += strlen(*argv) + 1;
	}
	memset(id, 0, sizeof(*id));
	ident_parse_cmdline(id, buf, n);
}

static void test_identify(void **state)
{
	struct client_ident id;
	char u[37];

	(void)state;
	cmdline(&id, (const char *const[]){ "/usr/bin/qemu-system-x86_64", "-accel", "tcg",
		"-name", "vmA", "-uuid", "12345678-9abc-def0-1234-56789abcdef0", NULL });
	assert_true(id.qemu);
	assert_string_equal(id.name, "vmA");
	assert_true(id.has_uuid);
	ident_format_uuid(id.uuid, u);
	assert_string_equal(u, "12345678-9abc-def0-1234-56789abcdef0");

	cmdline(&id, (const char *const[]){ "qemu-kvm", "-name",
		"guest=web,,01,debug-threads=on", NULL });
	assert_true(id.qemu);
	assert_string_equal(id.name, "web_01"); /* ",," unescaped, then sanitized */

	cmdline(&id, (const char *const[]){ "qemu-system-x86_64", "-name",
		"db,process=qemu-db", "-uuid", "bad", NULL });
	assert_string_equal(id.name, "db");
	assert_false(id.has_uuid);

	cmdline(&id, (const char *const[]){ "/usr/sbin/ivsock-agent", "-name", "x", NULL });
	assert_false(id.qemu);
	assert_string_equal(id.name, "");

	cmdline(&id, (const char *const[]){ "qemu-system-x86_64", "-name", NULL });
	assert_true(id.qemu);
	assert_string_equal(id.name, "");
	/* unterminated garbage */
	memset(&id, 0, sizeof(id));
	ident_parse_cmdline(&id, "qemu\0-name\0abc", 14);
	assert_string_equal(id.name, "");
}

static void test_peer_ids(void **state)
{
	struct peer_ids *p = malloc(sizeof(*p));
	int i, a, b;

	(void)state;
	peer_ids_init(p);
	assert_int_equal(peer_id_alloc(p), 0);
	assert_int_equal(peer_id_alloc(p), 1);
	peer_id_free(p, 0);
	/* next-fit: a freed ID is not handed out again at once */
	assert_int_equal(peer_id_alloc(p), 2);
	assert_int_equal(peer_id_reserve(p, 2), -EEXIST);
	assert_int_equal(p->count, 2);
	for (i = 0; i < 65534; i++)
		assert_true(peer_id_alloc(p) >= 0);
	assert_int_equal(peer_id_alloc(p), -ENOSPC);
	peer_id_free(p, 777);
	assert_int_equal(peer_id_alloc(p), 777);
	a = peer_id_used(p, 65535);
	b = peer_id_used(p, 65536);
	assert_true(a);
	assert_false(b);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_quick_domain),
		cmocka_unit_test(test_ini),
		cmocka_unit_test(test_identify),
		cmocka_unit_test(test_peer_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
