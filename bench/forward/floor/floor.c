// floor: the least a UDP relay built on epoll can do per exchange, as a
// yardstick for portolan's UDP loop (not a product: one client, one
// target, no sessions, no expiry, no errors handled). Per exchange it makes
// the six system calls portolan makes (epoll_wait, recvfrom, send; then
// epoll_wait, recv, sendto) and nothing else, so the gap between the two is
// what the Go runtime and portolan's bookkeeping cost.
//
//   cc -O2 -o floor floor.c && ./floor 16305 5301   # 127.0.0.1:16305 -> 127.0.0.1:5301
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: floor LISTEN-PORT TARGET-PORT (both on 127.0.0.1)\n");
		return 2;
	}
	struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
	struct sockaddr_in target = local;
	target.sin_port = htons(atoi(argv[2]));

	int l = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (l < 0 || u < 0 || bind(l, (void *)&local, sizeof local) || connect(u, (void *)&target, sizeof target)) {
		perror("floor");
		return 1;
	}
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	ev.data.fd = u;
	epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);

	static char buf[65536];
	struct sockaddr_in client;
	socklen_t clen = sizeof client;
	struct epoll_event evs[8];
	for (;;) {
		int n = epoll_wait(ep, evs, 8, -1);
		for (int i = 0; i < n; i++) {
			ssize_t k;
			if (evs[i].data.fd == l) {
				clen = sizeof client;
				if ((k = recvfrom(l, buf, sizeof buf, 0, (void *)&client, &clen)) >= 0)
					send(u, buf, k, 0);
			} else if ((k = recv(u, buf, sizeof buf, 0)) >= 0) {
				sendto(l, buf, k, 0, (void *)&client, clen);
			}
		}
	}
}
