"""Conan 2 recipe of kvcodec, kept in its repository:

    conan create packaging/conan --build=missing [-o "&:shared=True"]

It builds the repository's own sources (export_sources copies them from the
repository root), installs them with `cmake --install`, and describes the
package to Conan, which generates consumers' CMake and pkg-config files.
"""
import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd, stdcpp_library
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir

required_conan_version = ">=2.0"


class KvcodecConan(ConanFile):
    name = "kvcodec"
    license = "Apache-2.0"
    version = "0.2.0"
    description = ("Compression of transformer KV caches (TurboQuant, PolarQuant, TurboAngle, "
                   "Block-GTQ) behind a stable C ABI")
    topics = ("kv-cache", "llm", "quantization", "compression")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "with_zstd": [True, False],
        "tools": [True, False],
    }
    default_options = {"shared": False, "fPIC": True, "with_zstd": True, "tools": False}

    def export_sources(self):
        # What the library's build reads: the top-level CMakeLists.txt, cmake/,
        # the core, the C API and tools/ (tools/CMakeLists.txt is part of the
        # build when tools=True).
        root = os.path.join(self.recipe_folder, "..", "..")
        for pattern in ("CMakeLists.txt", "LICENSE*", "cmake/*", "codec/*", "capi/*", "tools/*"):
            copy(self, pattern, root, self.export_sources_folder)

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # Highway >= 1.0.3 (kvcodec keeps to its API); xxhash is used
        # header-only inside the library.
        self.requires("highway/[>=1.0.3 <2]")
        self.requires("xxhash/[>=0.8.1 <0.9]")
        if self.options.with_zstd:
            self.requires("zstd/[>=1.5 <2]")

    def validate(self):
        check_min_cppstd(self, 17)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["BUILD_TESTING"] = False
        tc.cache_variables["KVC_BUILD_TOOLS"] = bool(self.options.tools)
        tc.cache_variables["KVC_WITH_ZSTD"] = bool(self.options.with_zstd)
        tc.cache_variables["KVC_WARNINGS_AS_ERRORS"] = False
        # kvcodec finds xxhash.h with find_path: point it at the package.
        xxhash = self.dependencies["xxhash"].cpp_info.includedirs[0]
        tc.cache_variables["KVC_XXHASH_INCLUDE_DIR"] = xxhash.replace("\\", "/")
        tc.generate()
        # Highway comes as highway::highway, zstd as zstd::libzstd: the
        # fallbacks of kvcodec's CMakeLists.txt.
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE*", self.source_folder, os.path.join(self.package_folder, "licenses"))
        CMake(self).install()
        # Conan writes consumers' CMake and pkg-config files from package_info.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "kvcodec")
        self.cpp_info.set_property("cmake_target_name", "kvcodec::kvcodec")
        self.cpp_info.set_property("pkg_config_name", "kvcodec")
        self.cpp_info.libs = ["kvcodec"]
        if self.options.shared:
            self.cpp_info.defines = ["KVC_SHARED"]  # dllimport in kvcodec.h on Windows
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["m", "pthread"]
        if not self.options.shared and stdcpp_library(self):
            # A static libkvcodec.a is C++; C programs link it too.
            self.cpp_info.system_libs.append(stdcpp_library(self))
