/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * guest-network-get-interfaces: every interface from getifaddrs with its hardware
 * address; addresses and /proc/net/dev statistics for those that have an IP address.
 */
#include "qga/ga.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define GA_MAC_LEN 6

/* Number of leading one bits in a netmask. */
static int prefix_len(const unsigned char *mask, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        n += __builtin_popcount(mask[i]);
    }
    return n;
}

/* Counters of one interface from /proc/net/dev; NULL if absent. */
static json_t *iface_stats(const char *name)
{
    FILE *f = fopen("/proc/net/dev", "r");
    char line[512];
    json_t *st = NULL;

    if (!f) {
        return NULL;
    }
    while (!st && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':'), *n = line;
        unsigned long long v[16];
        if (!colon) {
            continue;
        }
        *colon = '\0';
        while (*n == ' ') {
            n++;
        }
        if (strcmp(n, name) || sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu "
                                      "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                                      &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
                                      &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]) != 16) {
            continue;
        }
        st = json_pack("{sIsIsIsIsIsIsIsI}", "rx-bytes", (json_int_t)v[0],
                       "rx-packets", (json_int_t)v[1], "rx-errs", (json_int_t)v[2],
                       "rx-dropped", (json_int_t)v[3], "tx-bytes", (json_int_t)v[8],
                       "tx-packets", (json_int_t)v[9], "tx-errs", (json_int_t)v[10],
                       "tx-dropped", (json_int_t)v[11]);
    }
    fclose(f);
    return st;
}

/* The entry for an interface name, made at its first sighting. */
static json_t *iface_get(json_t *list, const char *name, int sock)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        if (!strcmp(json_string_value(json_object_get(e, "name")), name)) {
            return e;
        }
    }
    json_t *e = json_pack("{ss}", "name", name);
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (sock >= 0 && ioctl(sock, SIOCGIFHWADDR, &ifr) == 0) {
        const unsigned char *mac = (const unsigned char *)ifr.ifr_hwaddr.sa_data;
        char text[3 * GA_MAC_LEN];
        snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
                 mac[3], mac[4], mac[5]);
        json_object_set_new(e, "hardware-address", json_string(text));
    }
    json_array_append_new(list, e);
    return e;
}

static json_t *cmd_interfaces(void *opaque, json_t *args, Error **errp)
{
    struct ifaddrs *ifap, *ifa;
    json_t *list;
    int sock;

    if (getifaddrs(&ifap) < 0) {
        error_setg_errno(errp, errno, "getifaddrs failed");
        return NULL;
    }
    sock = socket(PF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    list = json_array();
    for (ifa = ifap; ifa; ifa = ifa->ifa_next) {
        json_t *e = iface_get(list, ifa->ifa_name, sock);
        char addr[INET6_ADDRSTRLEN];
        int prefix;
        const char *type;

        if (!ifa->ifa_addr) {
            continue;
        }
        if (ifa->ifa_addr->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, addr,
                      sizeof(addr));
            prefix = ifa->ifa_netmask
                     ? prefix_len((unsigned char *)&((struct sockaddr_in *)
                                                     ifa->ifa_netmask)->sin_addr, 4) : 0;
            type = "ipv4";
        } else if (ifa->ifa_addr->sa_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr, addr,
                      sizeof(addr));
            prefix = ifa->ifa_netmask
                     ? prefix_len((unsigned char *)&((struct sockaddr_in6 *)
                                                     ifa->ifa_netmask)->sin6_addr, 16) : 0;
            type = "ipv6";
        } else {
            continue;
        }
        json_t *addrs = json_object_get(e, "ip-addresses");
        if (!addrs) {
            addrs = json_array();
            json_object_set_new(e, "ip-addresses", addrs);
        }
        json_array_append_new(addrs, json_pack("{sssssi}", "ip-address", addr,
                                               "ip-address-type", type, "prefix", prefix));
        if (!json_object_get(e, "statistics")) {
            json_t *st = iface_stats(ifa->ifa_name);
            if (st) {
                json_object_set_new(e, "statistics", st);
            }
        }
    }
    if (sock >= 0) {
        close(sock);
    }
    freeifaddrs(ifap);
    return list;
}

const QmpCommandDef ga_network_cmds[] = {
    { "guest-network-get-interfaces", cmd_interfaces },
    { NULL },
};
