base:
  '*':
    - protector
