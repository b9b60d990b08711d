// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsockd's configuration parsers (hostd/config.c): an ini file
 * (through a memfd, as conf_load reads a path), the --domain quick syntax,
 * and the size and duration parsers, followed by conf_validate. Whatever is
 * accepted must respect the documented bounds.
 */
#include <errno.h>
#include <sys/mman.h>

#include "../../hostd/config.h"
#include "../../hostd/log.h"
#include "fuzz.h"

static struct daemon_conf conf;

static void check_conf(const struct daemon_conf *c)
{
	unsigned int i, j;

	FUZZ_ASSERT(c->ndomains <= CONF_DOMAINS_MAX);
	FUZZ_ASSERT(memchr(c->control, '\0', sizeof(c->control)));
	for (i = 0; i < c->ndomains; i++) {
		const struct dom_conf *d = &c->domains[i];

		FUZZ_ASSERT(memchr(d->name, '\0', sizeof(d->name)));
		FUZZ_ASSERT(memchr(d->socket, '\0', sizeof(d->socket)));
		FUZZ_ASSERT(memchr(d->backing, '\0', sizeof(d->backing)));
		FUZZ_ASSERT(d->nallow <= CONF_ALLOW_MAX);
		for (j = 0; j < d->nallow; j++)
			FUZZ_ASSERT(memchr(d->allow[j], '\0', sizeof(d->allow[j])));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	char err[512], path[64], *s;
	int rc, fd, fds_before = fuzz_open_fds();

	log_set_level(LOG_EMERG);
	conf_defaults(&conf);
	s = malloc(in.n + 1);
	FUZZ_ASSERT(s);
	memcpy(s, in.p, in.n);
	s[in.n] = '\0';

	switch (mode % 3) {
	case 0:
		fd = memfd_create("ivsockd.conf", MFD_CLOEXEC);
		FUZZ_ASSERT(fd >= 0);
		FUZZ_ASSERT(write(fd, in.p, in.n) == (ssize_t)in.n);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		err[0] = '\0';
		rc = conf_load(&conf, path, err, sizeof(err));
		close(fd);
		FUZZ_ASSERT(rc <= 0);
		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)));
		break;
	case 1: {
		/* Several quick domains, separated by newlines. */
		char *save = NULL, *tok;

		for (tok = strtok_r(s, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
			rc = conf_add_quick_domain(&conf, tok, err, sizeof(err));
			FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
		}
		break;
	}
	default: {
		uint64_t v;
		uint32_t ms;

		if (conf_parse_size(s, &v) == 0 && strpbrk(s, "kK"))
			FUZZ_ASSERT(v % 1024 == 0);
		(void)conf_parse_duration(s, &ms);
		break;
	}
	}
	check_conf(&conf);
	if (conf_validate(&conf, err, sizeof(err)) == 0) {
		unsigned int i;

		for (i = 0; i < conf.ndomains; i++) {
			const struct dom_conf *d = &conf.domains[i];

			FUZZ_ASSERT(d->region_size && !(d->region_size & (d->region_size - 1)));
			FUZZ_ASSERT(d->ring_size && !(d->ring_size & (d->ring_size - 1)));
			FUZZ_ASSERT(d->vectors >= 1 && d->vectors <= 64);
			FUZZ_ASSERT(d->max_vms >= 1 && d->max_vms <= 254);
			(void)conf_find_domain(&conf, d->name);
			(void)conf_allowed(d, "vm-1");
		}
	}
	free(s);
	fuzz_check_no_fd_leak(fds_before);
	return 0;
}
