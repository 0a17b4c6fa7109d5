// ESLint flat config. The determinism ban (STYLE.md 7.6) is the part that matters most:
// the pure rooms must run unchanged inside the simulator, so time, timers, randomness and
// node:* modules are banned there, and the simulated rooms may only reach them through the
// injected Clock and Random.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'

const nondeterministicGlobals = [
  { name: 'Date', message: 'Use the injected Clock (src/common/clock.ts).' },
  { name: 'setTimeout', message: 'Use the injected Clock.setTimer.' },
  { name: 'setInterval', message: 'Use the injected Clock.setTimer.' },
  { name: 'setImmediate', message: 'Use the injected Clock.setTimer.' },
  { name: 'performance', message: 'Use the injected Clock.' },
  { name: 'WeakRef', message: 'GC is non-deterministic.' },
  { name: 'FinalizationRegistry', message: 'GC is non-deterministic.' },
]
const nondeterministicProperties = [
  { object: 'Math', property: 'random', message: 'Use the injected Random.' },
  { object: 'Date', property: 'now', message: 'Use the injected Clock.' },
  { object: 'process', property: 'hrtime', message: 'Use the injected Clock.' },
  { object: 'crypto', property: 'randomUUID', message: 'Use the injected Random.' },
  { object: 'crypto', property: 'randomBytes', message: 'Use the injected Random.' },
]

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/gen/**', 'data/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-floating-promises': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: { '@typescript-eslint/no-floating-promises': 'error' },
  },
  {
    files: ['scripts/**/*.js', 'bin/**/*.js', 'eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  // Simulated rooms: no ambient time or randomness; the shell hands them in.
  {
    files: [
      'src/common/**/*.ts',
      'src/storage/**/*.ts',
      'src/shard/**/*.ts',
      'src/node/**/*.ts',
      'src/cluster/**/*.ts',
      'src/router/**/*.ts',
    ],
    ignores: ['src/common/clock-system.ts', 'src/common/random-system.ts'],
    rules: {
      'no-restricted-globals': ['error', ...nondeterministicGlobals],
      'no-restricted-properties': ['error', ...nondeterministicProperties],
    },
  },
  // The simulator runs on simulated time only (bench files measure real time and are exempt).
  {
    files: ['test/sim/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', ...nondeterministicGlobals],
      'no-restricted-properties': ['error', ...nondeterministicProperties],
    },
  },
  // Pure rooms: additionally no node:* modules and no async.
  {
    files: [
      'src/raft/**/*.ts',
      'src/hashing/**/*.ts',
      'src/verify/**/*.ts',
      'src/routing/**/*.ts',
      'src/planner/**/*.ts',
    ],
    rules: {
      'no-restricted-globals': ['error', ...nondeterministicGlobals],
      'no-restricted-properties': ['error', ...nondeterministicProperties],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', 'fs', 'net', 'os', 'crypto', 'timers', 'worker_threads'],
              message: 'Pure room.',
            },
            {
              group: [
                'pino',
                '**/storage/**',
                '**/node/**',
                '**/server/**',
                '**/shard/**',
                '**/cluster/**',
                '**/router/**',
                '**/client/**',
              ],
              message: 'Pure room.',
            },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'FunctionDeclaration[async=true]', message: 'The pure core never awaits.' },
        { selector: 'ArrowFunctionExpression[async=true]', message: 'The pure core never awaits.' },
        { selector: 'FunctionExpression[async=true]', message: 'The pure core never awaits.' },
      ],
    },
  },
)
