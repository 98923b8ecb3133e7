# Locate Boost's headers (only header-only Boost.Lockfree is used).
# Order: an explicit -DFANWIRE_BOOST_INCLUDE, the cmeel-boost wheel that pip installs as a
# build requirement, then a system Boost.
if(NOT FANWIRE_BOOST_INCLUDE)
  find_package(Python COMPONENTS Interpreter QUIET)
  if(Python_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python_EXECUTABLE} -c
        "import cmeel, pathlib; print(pathlib.Path(cmeel.__file__).resolve().parent.parent / 'cmeel.prefix' / 'include')"
      OUTPUT_VARIABLE _cmeel_include OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  find_path(FANWIRE_BOOST_INCLUDE boost/lockfree/queue.hpp
    HINTS ${_cmeel_include} /usr/include /usr/local/include)
endif()
if(NOT FANWIRE_BOOST_INCLUDE)
  message(FATAL_ERROR "Boost headers not found: pip install cmeel-boost, or install Boost (libboost-dev)")
endif()
message(STATUS "fanwire: Boost headers from ${FANWIRE_BOOST_INCLUDE}")
