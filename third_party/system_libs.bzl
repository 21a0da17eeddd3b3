"""A repository of cc_library targets for Debian's packaged libraries.

Link flags come from each library's pkg-config file, read when the repository
is fetched, so the build follows whatever Debian ships on this architecture
(x86_64 servers and arm64 boards alike). Headers live in /usr/include, which
the auto-configured C++ toolchain already searches.
"""

# target name -> pkg-config modules whose --libs it links.
_LIBRARIES = {
    "absl": [
        "absl_flags_parse",
        "absl_flat_hash_map",
        "absl_hash",
        "absl_random_random",
        "absl_status",
        "absl_statusor",
        "absl_str_format",
        "absl_strings",
        "absl_synchronization",
        "absl_time",
    ],
    "benchmark": ["benchmark"],
    "capnp": ["capnp", "kj"],
    "gtest": ["gmock", "gtest"],
    "gtest_main": ["gmock_main", "gmock", "gtest"],
    "httplib": ["cpp-httplib"],
    "jpeg": ["libjpeg"],
    "png": ["libpng"],
    "prometheus": ["prometheus-cpp-core"],
    "zlib": ["zlib"],
    "zmq": ["libzmq", "cppzmq"],
}

def _pkg_config_libs(rctx, pkg_config, modules):
    result = rctx.execute([pkg_config, "--libs"] + modules)
    if result.return_code != 0:
        fail("pkg-config --libs %s failed (is the -dev package installed? run ./fedge setup):\n%s" %
             (" ".join(modules), result.stderr))
    return [flag for flag in result.stdout.strip().split(" ") if flag]

# The -D flags a library's headers need (cpp-httplib's feature switches must
# match how Debian built the library).
def _pkg_config_defines(rctx, pkg_config, modules):
    result = rctx.execute([pkg_config, "--cflags-only-other"] + modules)
    if result.return_code != 0:
        fail("pkg-config --cflags-only-other %s failed:\n%s" % (" ".join(modules), result.stderr))
    return [flag[2:] for flag in result.stdout.strip().split(" ") if flag.startswith("-D")]

def _system_libs_impl(rctx):
    pkg_config = rctx.which("pkg-config")
    if not pkg_config:
        fail("pkg-config not found: run ./fedge setup to install the build dependencies")
    lines = ['package(default_visibility = ["//visibility:public"])', ""]
    for name in sorted(_LIBRARIES.keys()):
        linkopts = _pkg_config_libs(rctx, pkg_config, _LIBRARIES[name])
        defines = _pkg_config_defines(rctx, pkg_config, _LIBRARIES[name])
        lines.append("cc_library(")
        lines.append("    name = %r," % name)
        lines.append("    linkopts = %r," % linkopts)
        if defines:
            lines.append("    defines = %r," % defines)
        lines.append(")")
        lines.append("")
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD", "\n".join(lines))

system_libs = repository_rule(
    implementation = _system_libs_impl,
    local = True,
    environ = ["PKG_CONFIG_PATH"],
)
